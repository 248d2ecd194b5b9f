"""A job VM (no network device) reaches its run's services through the forward, and
nothing else does: the services have no TCP port on the host, and a request lands in the
run the VM is attached to, not in another run's."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
from pathlib import Path

import pytest

from vmrunner.config import load_settings
from vmrunner.services import machines
from vmrunner.toolkit.artifacts import read_artifacts
from vmrunner.toolkit.run import RunToolkit
from vmrunner.toolkit.service import Identity, ToolkitService
from vmrunner.toolkit.tunnel import GUEST_PORT

# What upload-artifact does, in the guest's Python: Create, one-shot blob PUT, Finalize,
# then List and download through the signed URL. Prints the download's sha256.
GUEST_CLIENT = r"""
import hashlib, json, os, sys, urllib.request, urllib.error
base, token = os.environ["ACTIONS_RESULTS_URL"], os.environ["ACTIONS_RUNTIME_TOKEN"]
import base64
claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
run, job = [s for s in claims["scp"].split() if s.startswith("Actions.Results:")][0].split(":")[1:]
def twirp(method, body, tok=token):
    req = urllib.request.Request(base + "twirp/github.actions.results.api.v1.ArtifactService/" + method,
        json.dumps(body).encode(), {"Content-Type": "application/json", "Authorization": "Bearer " + tok})
    try:
        return json.load(urllib.request.urlopen(req, timeout=60))
    except urllib.error.HTTPError as e:
        return {"status": e.code}
ids = {"workflow_run_backend_id": run, "workflow_job_run_backend_id": job}
print(json.dumps({"forged": twirp("ListArtifacts", ids, tok=sys.argv[1])}))
up = twirp("CreateArtifact", {**ids, "name": "from-guest", "version": 4})
data = b"guest bytes " * 1000
req = urllib.request.Request(up["signed_upload_url"], data, {"x-ms-blob-type": "BlockBlob"}, method="PUT")
urllib.request.urlopen(req, timeout=60)
fin = twirp("FinalizeArtifact", {**ids, "name": "from-guest", "size": str(len(data))})
url = twirp("GetSignedArtifactURL", {**ids, "name": "from-guest"})["signed_url"]
got = urllib.request.urlopen(url, timeout=60).read()
print(json.dumps({"id": fin["artifact_id"], "sha": hashlib.sha256(got).hexdigest()}))
"""


@pytest.mark.vm
@pytest.mark.usefixtures("debian_image")
def test_a_job_vm_reaches_only_its_own_runs_services(state_dir: Path, tmp_path: Path) -> None:
    settings = load_settings(env={**os.environ, "VMRUNNER_HOME": str(state_dir)})
    ident = Identity("o/r", "refs/heads/main")
    mine = ToolkitService(tmp_path / "run-a", tmp_path / "cache", ident)
    other = ToolkitService(tmp_path / "run-b", tmp_path / "cache", ident)

    async def main() -> list[dict[str, object]]:
        await mine.start(uds=tmp_path / "a.sock")
        await other.start(uds=tmp_path / "b.sock")
        toolkit = RunToolkit(mine)
        try:
            async with machines.machine(settings, accel="tcg", name="job") as vm:
                env = await toolkit.job_env(vm, "job-1")
                await vm.copy_in(_write(tmp_path / "client.py", GUEST_CLIENT), "/root/client.py")
                res = await vm.execute(["python3", "/root/client.py", other.token("job-1")],
                                       _opts(env))  # fmt: skip
                assert res.ok, res.stderr.decode()
                # nothing on the host's loopback: the guest's port is the guest's alone
                with pytest.raises(OSError):
                    socket.create_connection(("127.0.0.1", GUEST_PORT), timeout=5).close()
                return [json.loads(line) for line in res.stdout.decode().splitlines()]
        finally:
            await toolkit.close()
            await other.stop()

    forged, uploaded = asyncio.run(main())
    assert forged == {"forged": {"status": 401}}  # another run's token is refused
    assert uploaded["sha"] == hashlib.sha256(b"guest bytes " * 1000).hexdigest()
    assert [(a.name, a.size) for a in read_artifacts(tmp_path / "run-a")] == [("from-guest", 12000)]
    assert read_artifacts(tmp_path / "run-b") == []
    assert mine.port is None and other.port is None  # Unix sockets only: no TCP port


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _opts(env: dict[str, str]) -> object:
    from vmrunner.vm.machine import ExecOptions

    return ExecOptions(env=env, timeout=300)
