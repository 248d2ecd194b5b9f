"""A run's artifacts, kept under ``<run dir>/artifacts``.

Each artifact is one zip (as ``@actions/artifact`` uploads it), ``<id>.zip``, described
in ``index.json``: id, name, the job that uploaded it, size, ``sha256:`` digest, when
created, and whether the upload was finalized. Names are unique within a run, as on
GitHub. Only the run's service writes the index (one process); readers
(:func:`read_artifacts`, ``vmrunner runs artifacts``) see it replaced atomically.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INDEX = "index.json"
DEFAULT_MAX_SIZE = 10 * 1024**3  # one artifact's zip


class ArtifactError(Exception):
    """A request the artifact store refuses: ``code`` is the Twirp error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Artifact:
    """One artifact of a run."""

    id: int
    name: str
    job: str
    size: int = 0
    digest: str = ""
    created_at: float = 0.0
    finalized: bool = False

    def summary(self) -> dict[str, Any]:
        """What the result document lists: name, size and digest (and the id)."""
        return {"id": self.id, "name": self.name, "size": self.size, "digest": self.digest}


def artifacts_dir(run_dir: Path) -> Path:
    return run_dir / "artifacts"


def read_artifacts(run_dir: Path) -> list[Artifact]:
    """The finalized artifacts of the run kept in ``run_dir``, by id (none: empty)."""
    try:
        data = json.loads((artifacts_dir(run_dir) / INDEX).read_text())
    except (OSError, ValueError):
        return []
    found = [Artifact(**a) for a in data.get("artifacts", [])]
    return sorted((a for a in found if a.finalized), key=lambda a: a.id)


class ArtifactStore:
    """The artifacts of one run, for its service (thread-safe within the process); one
    artifact's zip may have at most ``max_size`` bytes."""

    def __init__(self, run_dir: Path, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self.root, self.max_size = artifacts_dir(run_dir), max_size
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._items: dict[int, Artifact] = {a.id: a for a in read_artifacts(run_dir)}

    def blob(self, artifact_id: int) -> Path:
        return self.root / f"{artifact_id}.zip"

    def staging(self, artifact_id: int) -> Path:
        return self.root / f".blocks-{artifact_id}"

    def _save(self) -> None:
        tmp = self.root / f".{INDEX}.tmp"
        items = [dataclasses.asdict(a) for a in sorted(self._items.values(), key=lambda a: a.id)]
        tmp.write_text(json.dumps({"artifacts": items}, indent=1))
        tmp.replace(self.root / INDEX)

    def create(self, job: str, name: str) -> Artifact:
        """Start an upload of ``name``; refused when a finalized one has that name. An
        unfinished upload of the same name is replaced."""
        with self._lock:
            for a in list(self._items.values()):
                if a.name == name and a.finalized:
                    raise ArtifactError(
                        "already_exists", f"an artifact named '{name}' already exists in this run"
                    )
                if a.name == name:
                    self._drop(a)
            new = Artifact(max(self._items, default=0) + 1, name, job, created_at=time.time())
            self._items[new.id] = new
            self._save()
            return new

    def pending(self, artifact_id: int) -> Artifact:
        """The unfinished upload ``artifact_id`` (for its blob PUTs)."""
        a = self._items.get(artifact_id)
        if a is None or a.finalized:
            raise ArtifactError("not_found", f"no upload in progress with id {artifact_id}")
        return a

    def unfinished(self, name: str) -> Artifact | None:
        """The upload of ``name`` not finalized yet, if any."""
        return next((a for a in self._items.values() if a.name == name and not a.finalized), None)

    def finalize(self, name: str, size: int, digest: str) -> Artifact:
        """Mark the upload of ``name`` done, with the size and digest measured here."""
        with self._lock:
            a = self.unfinished(name)
            if a is None or not self.blob(a.id).is_file():
                raise ArtifactError("not_found", f"no uploaded artifact named '{name}' to finalize")
            done = dataclasses.replace(a, size=size, digest=digest, finalized=True)
            self._items[a.id] = done
            self._save()
            return done

    def listing(self, name: str | None = None, artifact_id: int | None = None) -> list[Artifact]:
        """The finalized artifacts, optionally only the one named ``name`` / with the id."""
        found = [a for a in self._items.values() if a.finalized]
        found = [a for a in found if (name is None or a.name == name)]
        return [a for a in found if artifact_id is None or a.id == artifact_id]

    def delete(self, name: str) -> Artifact:
        """Remove the finalized artifact ``name`` (``upload-artifact``'s ``overwrite``)."""
        with self._lock:
            a = next((x for x in self._items.values() if x.name == name and x.finalized), None)
            if a is None:
                raise ArtifactError("not_found", f"no artifact named '{name}' in this run")
            self._drop(a)
            self._save()
            return a

    def _drop(self, a: Artifact) -> None:
        del self._items[a.id]
        self.blob(a.id).unlink(missing_ok=True)
        shutil.rmtree(self.staging(a.id), ignore_errors=True)
