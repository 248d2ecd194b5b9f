"""The KVM check's cache is written safely by several threads of one process at once
(a worker runs several runs, each checking the accelerator): each uses its own
temporary file, so none renames another's away."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from vmrunner.vm import kvm


def test_threads_writing_the_kvm_cache_at_once_all_succeed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    status = kvm.probe_kvm(tmp_path / "no-kvm-device")  # a real answer: no device there
    monkeypatch.setattr(kvm, "probe_kvm", lambda *a, **k: status)
    cache = tmp_path / "kvm-check.json"
    errors: list[BaseException] = []
    for _ in range(20):
        barrier = threading.Barrier(8)

        def check(barrier: threading.Barrier) -> None:
            barrier.wait()
            try:
                kvm.kvm_status(cache, refresh=True)
            except BaseException as exc:  # noqa: BLE001 -- collected for the assertion
                errors.append(exc)

        threads = [threading.Thread(target=check, args=(barrier,)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert json.loads(cache.read_text())["functional"] == status.functional
    assert list(tmp_path.glob("*.tmp")) == []
