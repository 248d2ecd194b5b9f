"""The typed bodies of ``/api/v1``: what every route takes and returns.

A result document is :class:`ResultDocument`, whose JSON Schema *is* the one result
schema (``vmrunner.results.RESULT_SCHEMA``): the OpenAPI description shows it as is, and
every document served is validated against it first. The learning answers are the
learning service's own result types (see ``v1_ops``).
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler, RootModel, field_validator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from vmrunner.results import RESULT_SCHEMA, validate_result

Kind = Literal["exec", "workflow", "systest"]
Status = Literal["queued", "running", "success", "failure", "cancelled", "timeout", "error"]


class ErrorDetail(BaseModel):
    """What went wrong: ``kind`` (not_found, invalid, unauthorized, forbidden, too_large,
    store, harness, internal, ...), a message for people, and where when known."""

    model_config = ConfigDict(extra="allow")
    kind: str
    message: str
    file: str | None = None
    line: int | None = None
    fields: list[str] | None = None


class ErrorBody(BaseModel):
    """Every error answer: ``{"error": {...}}``, never a stack trace."""

    error: ErrorDetail


class ResultDocument(RootModel[dict[str, Any]]):
    """A run's result document, valid against the one result schema."""

    @field_validator("root")
    @classmethod
    def _valid(cls, value: dict[str, Any]) -> dict[str, Any]:
        problems = validate_result(value)
        if problems:
            raise ValueError("not a valid result document: " + "; ".join(problems[:5]))
        return value

    @classmethod
    def __get_pydantic_json_schema__(
        cls, _core: CoreSchema, _handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = copy.deepcopy(RESULT_SCHEMA)
        schema.pop("$schema", None)
        schema.pop("$id", None)
        return schema


class RunSummary(BaseModel):
    """One run as listed: what it is, where it ran, how far it got."""

    id: str
    kind: Kind
    status: Status
    title: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    host: str
    repo: str | None
    branch: str | None
    sha: str | None
    cancel_requested: bool


class RunPage(BaseModel):
    """A page of runs, newest first; ``next`` is the URL of the next (older) page, or
    null on the last."""

    runs: list[RunSummary]
    next: str | None


class RunDetail(BaseModel):
    """A run: its record (and request) always, its result ``document`` once it is final
    (null while it is queued or running), and the names of its logs."""

    run: RunSummary
    request: dict[str, Any]
    document: ResultDocument | None
    logs: list[str]


class ExecSubmit(BaseModel):
    """``exec``: one command in a fresh VM, run by this server. Unset fields take the
    server's settings."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["exec"]
    argv: list[str] = Field(min_length=1, max_length=4096)
    image: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    accel: Literal["auto", "kvm", "tcg"] | None = None
    cpus: int | None = Field(default=None, ge=1, le=256)
    memory_mib: int | None = Field(default=None, ge=128, le=1048576)
    timeout: float | None = Field(default=None, gt=0)
    network: Literal["none", "user"] = "none"
    env: dict[str, str] = Field(default_factory=dict)
    workdir: str = "/root"
    boot_mode: Literal["fast", "systemd"] = "fast"


class SystestSubmit(BaseModel):
    """``systest``: a recipe (YAML text, checked before anything runs: 422 with its file
    and line) or, for NixOS, a flake reference in ``config``, run by this server."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["systest"]
    recipe: str | None = Field(default=None, max_length=1_000_000)
    recipe_name: str = "recipe.yml"
    config: str | None = None
    flavor: Literal["debian", "nixos"] = "debian"
    host: str | None = None
    boot_timeout: float = Field(default=300.0, gt=0)
    accel: Literal["auto", "kvm", "tcg", ""] = ""
    cpus: int = Field(default=2, ge=1, le=256)
    memory_mib: int = Field(default=1024, ge=128, le=1048576)


class WorkflowSubmit(BaseModel):
    """``workflow``: a repository ``owner/name`` (fetched through the server's
    ``github_git_url``) at ``ref``, as the event ``event``; queued for a worker."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["workflow"]
    repo: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
    ref: str = Field(default="main", min_length=1, max_length=255)
    event: Literal["push", "workflow_dispatch"] = "push"
    workflow: str | None = None
    inputs: dict[str, str] = Field(default_factory=dict)


class Submitted(BaseModel):
    """The kept run(s): ``id`` the first, ``ids`` all (a push may trigger several
    workflows, each its own run)."""

    id: str
    ids: list[str]


class QueueEntry(BaseModel):
    """One item of the shared queue."""

    run_id: str
    repo: str
    sha: str
    ref: str
    branch: str | None
    workflow: str
    workflow_name: str
    event: str
    group: str
    state: Literal["pending", "claimed"]
    created_at: float
    claimed_at: float | None
    worker: str | None
    lease_until: float | None
    attempts: int


class QueueGroup(BaseModel):
    group: str
    pending: list[QueueEntry]
    claimed: list[QueueEntry]


class QueueHost(BaseModel):
    host: str
    claimed: list[QueueEntry]


class QueueView(BaseModel):
    """The shared queue: depth per state; pending and claimed items per concurrency
    group, and claimed ones per host."""

    depth: dict[str, int]
    groups: list[QueueGroup]
    hosts: list[QueueHost]


class Worker(BaseModel):
    """A registered worker."""

    id: str
    host: str
    capacity: int
    running: int
    draining: bool
    started_at: float
    heartbeat_at: float
    heartbeat_age_s: float


class HostList(BaseModel):
    workers: list[Worker]


class Ready(BaseModel):
    ready: bool
    database: bool
    revision: str | None
    head: str | None
    message: str
