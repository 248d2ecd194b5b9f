"""The HTTP face of the toolkit services: Twirp calls and signed blob URLs.

``POST /twirp/<service>/<method>`` needs ``Authorization: Bearer <ACTIONS_RUNTIME_TOKEN>``
(a token this service issued, not expired), else 401. Blob URLs
(``/blob/<artifact|cache>/<id>?se=<expiry>&sig=<hmac>``) carry their own signature, as
Azure's SAS URLs do, and speak the Azure blob protocol of :mod:`.blobs`. URLs are built
from the request's ``Host``, so they point wherever the client reached this service
(the guest's forwarded port, or a test's loopback port).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from vmrunner.toolkit import blobs, twirp
from vmrunner.toolkit.artifacts import ArtifactError, ArtifactStore
from vmrunner.toolkit.cachestore import CacheStore
from vmrunner.toolkit.tokens import TokenError, verify

URL_TTL = 6 * 3600.0


class Keys:
    """The service's secret: signs tokens and blob URLs."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    def blob_sig(self, kind: str, item: int, write: bool, expires: int) -> str:
        text = f"{kind}/{item}/{'w' if write else 'r'}/{expires}"
        return hmac.new(self.secret, text.encode(), hashlib.sha256).hexdigest()


def _azure_error(status: int, code: str, message: str) -> Response:
    body = f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>{message}</Message></Error>'
    return Response(body, status, {"x-ms-error-code": code}, media_type="application/xml")


def _twirp_error(code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "msg": message}, twirp.TwirpError(code, message).status)


class ToolkitApp:
    """The ASGI application over one :class:`~.twirp.Backend` (stores) and its keys."""

    def __init__(self, keys: Keys, artifacts: ArtifactStore, cache: CacheStore) -> None:
        self.keys, self.artifacts, self.cache = keys, artifacts, cache
        self.app = Starlette(routes=[
            Route("/twirp/{service}/{method}", self.twirp_call, methods=["POST"]),
            Route("/blob/{kind}/{item:int}", self.blob, methods=["GET", "PUT", "HEAD"]),
        ])  # fmt: skip

    def signer(self, base: str) -> twirp.Signer:
        def sign(kind: str, item: int, write: bool) -> str:
            expires = int(time.time() + URL_TTL)
            sig = self.keys.blob_sig(kind, item, write, expires)
            return f"{base}/blob/{kind}/{item}?se={expires}&sp={'w' if write else 'r'}&sig={quote(sig)}"

        return sign

    async def twirp_call(self, request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        try:
            claims = verify(self.keys.secret, auth.removeprefix("Bearer ").strip())
        except TokenError as exc:
            return _twirp_error("unauthenticated", f"ACTIONS_RUNTIME_TOKEN refused: {exc}")
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError as exc:
            return _twirp_error("malformed", f"the request is not JSON: {exc}")
        base = f"http://{request.headers.get('host', 'localhost')}"
        backend = twirp.Backend(self.artifacts, self.cache, self.signer(base))
        try:
            result = await twirp.call(
                backend, claims, request.path_params["service"], request.path_params["method"], body
            )
        except twirp.TwirpError as exc:
            return _twirp_error(exc.code, str(exc))
        return JSONResponse(result)

    def _signed(self, request: Request, write: bool) -> bool:
        q = request.query_params
        try:
            expires = int(q.get("se", "0"))
        except ValueError:
            return False
        want = self.keys.blob_sig(
            request.path_params["kind"], request.path_params["item"], write, expires
        )
        return expires > time.time() and hmac.compare_digest(want, q.get("sig", ""))

    async def blob(self, request: Request) -> Response:
        kind, item = request.path_params["kind"], int(request.path_params["item"])
        write = request.method == "PUT"
        if kind not in ("artifact", "cache") or not self._signed(request, write):
            return _azure_error(403, "AuthenticationFailed", "the URL's signature is not valid")
        if not write:
            return self._download(kind, item)
        try:
            return await self._upload(request, kind, item)
        except blobs.TooLargeError as exc:
            return _azure_error(413, "RequestBodyTooLarge", str(exc))
        except blobs.BadBlockListError as exc:
            return _azure_error(400, "InvalidBlockList", str(exc))
        except ArtifactError as exc:
            return _azure_error(404, "BlobNotFound", str(exc))

    def _download(self, kind: str, item: int) -> Response:
        if kind == "artifact":
            found = self.artifacts.listing(artifact_id=item)
            path = self.artifacts.blob(item) if found else None
        else:
            path = self.cache.blob(item)
        if path is None or not path.is_file():
            return _azure_error(404, "BlobNotFound", "no such blob")
        return FileResponse(path, media_type="application/octet-stream")

    def _target(self, kind: str, item: int) -> tuple[Path, Path, int]:
        """The blob file, its staging directory and the size limit of an upload."""
        if kind == "artifact":
            self.artifacts.pending(item)
            a = self.artifacts
            return a.blob(item), a.staging(item), a.max_size
        if not self.cache.pending(item):
            raise ArtifactError("not_found", f"no cache upload in progress with id {item}")
        c = self.cache
        return c.blob(item), c.staging(item), c.limit

    async def _upload(self, request: Request, kind: str, item: int) -> Response:
        dest, staging, limit = self._target(kind, item)
        declared = int(request.headers.get("content-length") or 0)
        comp = request.query_params.get("comp")
        if comp == "block":
            room = limit - blobs.staged_size(staging)
            if declared > room:
                raise blobs.TooLargeError(f"the upload passes the limit of {limit} bytes")
            block = blobs.block_file(staging, request.query_params.get("blockid", ""))
            await blobs.receive(_body(request), block, room)
        elif comp == "blocklist":
            ids = blobs.parse_block_list(await request.body())
            blobs.commit(staging, ids, dest, limit)
        elif comp is None:
            if declared > limit:
                raise blobs.TooLargeError(f"the upload passes the limit of {limit} bytes")
            await blobs.receive(_body(request), dest, limit)
        else:
            return _azure_error(400, "InvalidQueryParameterValue", f"comp={comp} is not supported")
        return Response(b"", 201, {"x-ms-request-server-encrypted": "false", "ETag": f'"{item}"'})


async def _body(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        if chunk:
            yield chunk
