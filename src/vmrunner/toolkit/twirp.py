"""The Twirp methods of GitHub's results service that the toolkit clients call.

``@actions/artifact`` 2.x calls ``ArtifactService`` (Create, Finalize, List,
GetSignedArtifactURL, Delete); ``@actions/cache`` 4.x with ``ACTIONS_CACHE_SERVICE_V2``
calls ``CacheService`` (CreateCacheEntry, FinalizeCacheEntryUpload,
GetCacheEntryDownloadURL). Requests and responses are protobuf JSON with the proto field
names (int64 as strings, wrappers as bare values). Each method takes the caller's
verified :class:`~.tokens.Claims`, the request body and a :class:`Backend` (the stores
and URL signing), and returns the response body or raises :class:`TwirpError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from vmrunner.toolkit.artifacts import Artifact, ArtifactError, ArtifactStore
from vmrunner.toolkit.blobs import sha256_file
from vmrunner.toolkit.cachestore import CacheRefused, CacheStore
from vmrunner.toolkit.tokens import Claims

ARTIFACT_SERVICE = "github.actions.results.api.v1.ArtifactService"
CACHE_SERVICE = "github.actions.results.api.v1.CacheService"
MAX_KEY = 512
STATUS = {
    "invalid_argument": 400, "malformed": 400, "unauthenticated": 401,
    "permission_denied": 403, "not_found": 404, "already_exists": 409,
    "failed_precondition": 412, "bad_route": 404, "internal": 500,
}  # fmt: skip


class TwirpError(Exception):
    """A Twirp error: ``code`` (its HTTP status is ``STATUS[code]``) and a message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    @property
    def status(self) -> int:
        return STATUS.get(self.code, 500)


class Signer(Protocol):
    def __call__(self, kind: str, item: int, write: bool) -> str: ...


@dataclass
class Backend:
    """What the methods act on; ``sign(kind, id, write)`` gives a blob URL."""

    artifacts: ArtifactStore
    cache: CacheStore
    sign: Signer


Body = Mapping[str, Any]
Method = Callable[[Backend, Claims, Body], Awaitable[dict[str, Any]]]


def _text(body: Body, field: str, required: bool = True) -> str:
    value = body.get(field)
    if value is None or value == "":
        if required:
            raise TwirpError("invalid_argument", f"{field} is required")
        return ""
    return str(value)


def _own_job(claims: Claims, body: Body) -> None:
    """The backend ids in the request must be the token's own."""
    run, job = body.get("workflow_run_backend_id"), body.get("workflow_job_run_backend_id")
    if run != claims.run_id or (job is not None and job != claims.job_id):
        raise TwirpError("permission_denied", "the backend ids are not those of this token")


def _stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _monolith(claims: Claims, a: Artifact) -> dict[str, Any]:
    return {
        "workflow_run_backend_id": claims.run_id, "workflow_job_run_backend_id": a.job,
        "database_id": str(a.id), "name": a.name, "size": str(a.size),
        "created_at": _stamp(a.created_at), "digest": a.digest,
    }  # fmt: skip


async def create_artifact(b: Backend, claims: Claims, body: Body) -> dict[str, Any]:
    _own_job(claims, body)
    a = b.artifacts.create(claims.job_id, _text(body, "name"))
    return {"ok": True, "signed_upload_url": b.sign("artifact", a.id, True)}


async def finalize_artifact(b: Backend, claims: Claims, body: Body) -> dict[str, Any]:
    _own_job(claims, body)
    name = _text(body, "name")
    pending = b.artifacts.unfinished(name)
    if pending is None or not b.artifacts.blob(pending.id).is_file():
        raise TwirpError("not_found", f"no uploaded artifact named '{name}' to finalize")
    path = b.artifacts.blob(pending.id)
    digest = "sha256:" + await asyncio.to_thread(sha256_file, path)
    size = path.stat().st_size
    claimed = body.get("hash")
    if claimed and claimed != digest:
        raise TwirpError("invalid_argument", f"the upload's digest is {digest}, not {claimed}")
    if "size" in body and int(body["size"]) != size:
        raise TwirpError("invalid_argument", f"the upload has {size} bytes, not {body['size']}")
    a = b.artifacts.finalize(name, size, digest)
    return {"ok": True, "artifact_id": str(a.id)}


async def list_artifacts(b: Backend, claims: Claims, body: Body) -> dict[str, Any]:
    _own_job(claims, {**body, "workflow_job_run_backend_id": None})
    id_filter = body.get("id_filter")
    found = b.artifacts.listing(body.get("name_filter"), int(id_filter) if id_filter else None)
    return {"artifacts": [_monolith(claims, a) for a in sorted(found, key=lambda a: a.id)]}


async def signed_artifact_url(b: Backend, claims: Claims, body: Body) -> dict[str, Any]:
    _own_job(claims, {**body, "workflow_job_run_backend_id": None})
    found = b.artifacts.listing(_text(body, "name"))
    if not found:
        raise TwirpError("not_found", f"no artifact named '{body['name']}' in this run")
    return {"signed_url": b.sign("artifact", found[0].id, False)}


async def delete_artifact(b: Backend, claims: Claims, body: Body) -> dict[str, Any]:
    _own_job(claims, {**body, "workflow_job_run_backend_id": None})
    a = b.artifacts.delete(_text(body, "name"))
    return {"ok": True, "artifact_id": str(a.id)}


def _key(body: Body) -> tuple[str, str]:
    key, version = _text(body, "key"), _text(body, "version")
    if len(key) > MAX_KEY or "," in key:
        raise TwirpError(
            "invalid_argument", f"a cache key is at most {MAX_KEY} characters, without commas"
        )
    return key, version


async def create_cache_entry(b: Backend, claims: Claims, body: Body) -> dict[str, Any]:
    key, version = _key(body)
    scope = claims.writable()
    if scope is None:
        return {"ok": False, "message": "this job may not save caches"}
    try:
        entry_id = await asyncio.to_thread(b.cache.reserve, key, version, scope)
    except CacheRefused as exc:
        return {"ok": False, "message": str(exc)}
    return {"ok": True, "signed_upload_url": b.sign("cache", entry_id, True)}


async def finalize_cache_entry(b: Backend, claims: Claims, body: Body) -> dict[str, Any]:
    key, version = _key(body)
    scope = claims.writable() or ""
    try:
        size = int(body.get("size_bytes") or 0)
        entry_id = await asyncio.to_thread(b.cache.finalize, key, version, scope, size)
    except CacheRefused as exc:
        return {"ok": False, "message": str(exc)}
    return {"ok": True, "entry_id": str(entry_id)}


async def cache_download_url(b: Backend, claims: Claims, body: Body) -> dict[str, Any]:
    key, version = _key(body)
    restore = [str(k) for k in body.get("restore_keys") or []]
    found = await asyncio.to_thread(b.cache.lookup, key, restore, version, claims.readable())
    if found is None:
        return {"ok": False}
    return {
        "ok": True,
        "signed_download_url": b.sign("cache", found.id, False),
        "matched_key": found.key,
    }


METHODS: dict[tuple[str, str], Method] = {
    (ARTIFACT_SERVICE, "CreateArtifact"): create_artifact,
    (ARTIFACT_SERVICE, "FinalizeArtifact"): finalize_artifact,
    (ARTIFACT_SERVICE, "ListArtifacts"): list_artifacts,
    (ARTIFACT_SERVICE, "GetSignedArtifactURL"): signed_artifact_url,
    (ARTIFACT_SERVICE, "DeleteArtifact"): delete_artifact,
    (CACHE_SERVICE, "CreateCacheEntry"): create_cache_entry,
    (CACHE_SERVICE, "FinalizeCacheEntryUpload"): finalize_cache_entry,
    (CACHE_SERVICE, "GetCacheEntryDownloadURL"): cache_download_url,
}


async def call(b: Backend, claims: Claims, service: str, method: str, body: Body) -> dict[str, Any]:
    """Run ``service``/``method``; store refusals become :class:`TwirpError`."""
    handler = METHODS.get((service, method))
    if handler is None:
        raise TwirpError("bad_route", f"no method {service}/{method}")
    try:
        return await handler(b, claims, body)
    except ArtifactError as exc:
        raise TwirpError(exc.code, str(exc)) from exc
    except (ValueError, TypeError) as exc:
        raise TwirpError("invalid_argument", str(exc)) from exc
