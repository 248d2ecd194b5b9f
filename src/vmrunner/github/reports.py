"""What vmrunner tells GitHub about a triggered workflow run, as outbox reports.

Pure: no I/O, no clock (times come in as ISO strings). A :class:`Report` is one
request body for one GitHub object, with the ``key`` that orders it: reports with one
key are sent strictly in the order they were made.

* Token mode (``"token"``): one commit status per job id, context
  ``vmrunner/<workflow name>/<job id>``, ``pending`` while queued and running, then
  ``success``/``failure``/``error`` with a description of at most 140 characters (the
  failed matrix instance, step and exit status) and ``target_url`` =
  ``<public_url>/runs/<run id>`` when ``public_url`` is set. Key: repo, sha, context.
* App mode (``"app"``): one check run per job id, name ``<workflow name> / <job id>``,
  ``external_id`` ``<workflow path>#<job id>`` (the dispatcher parses it back on
  ``check_run rerequested``), ``queued`` -> ``in_progress`` -> ``completed`` with a
  conclusion and a Markdown output; annotations go 50 per report, the later batches in
  extra reports of the same key. Key: repo, sha, run id, external id -- the first report
  of a key creates the check run, the later ones update it.

Matrix instances of one job (and the jobs a reusable workflow call ran, ``call/inner``)
are reported together under the top-level job id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from vmrunner.github import summary as md

MAX_DESCRIPTION = 140
MAX_KEY = 500
ANNOTATION_BATCH = 50
MAX_ANNOTATIONS = 1000
"""Annotations beyond this many (20 requests' worth) are left out."""
MODES = ("token", "app")
ReportKind = Literal["status", "check_run"]
Json = Mapping[str, Any]


@dataclass(frozen=True)
class ItemFacts:
    """What a queue item says about the run being reported (``run_id`` None when no run
    was made, e.g. for a workflow file that could not be loaded)."""

    repo: str
    sha: str
    workflow: str
    workflow_name: str = ""
    run_id: int | str | None = None

    @classmethod
    def from_mapping(cls, row: Json) -> ItemFacts:
        """From a ``queue`` row (or any mapping with the same keys)."""
        return cls(str(row["repo"]), str(row["sha"]), str(row["workflow"]),
                   str(row.get("workflow_name") or ""), row.get("run_id"))  # fmt: skip

    @property
    def display_name(self) -> str:
        """The workflow's ``name:``, else its file name (as GitHub shows it)."""
        return self.workflow_name or self.workflow.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class JobRef:
    """A job of the workflow, before it runs: its id and display name."""

    id: str
    name: str = ""


@dataclass(frozen=True)
class Report:
    """One request to make: ``kind`` status (POST a commit status) or check_run (create
    the key's check run, or update it once created)."""

    kind: ReportKind
    repo: str
    sha: str
    key: str
    body: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobOutcome:
    """A job's final state over its instances: commit status ``state``, check run
    ``conclusion``, a one-line ``description`` (<= 140 characters)."""

    job_id: str
    instances: tuple[Json, ...]
    state: Literal["success", "failure", "error"]
    conclusion: str
    description: str


def cut_key(key: str) -> str:
    """``key`` fitted into the outbox's 500 characters (a long one keeps a hash)."""
    if len(key) <= MAX_KEY:
        return key
    return key[: MAX_KEY - 17] + "#" + hashlib.sha256(key.encode()).hexdigest()[:16]


def _describe(text: str) -> str:
    return md.cut(" ".join(text.split()), MAX_DESCRIPTION, "…")


def _job_error(document: Json, job_id: str) -> Json | None:
    """The first error of the document naming job ``job_id`` (or no job)."""
    for error in document.get("errors") or []:
        if error.get("job") is None or str(error["job"]).split("/")[0] == job_id:
            return dict(error)
    return None


def _not_run(document: Json, job_id: str) -> JobOutcome:
    error = _job_error(document, job_id)
    why = error.get("message", "") if error else f"the run ended {document.get('status', '?')}"
    cancelled = document.get("status") == "cancelled"
    return JobOutcome(job_id, (), "error", "cancelled" if cancelled else "failure",
                      _describe(f"not run: {why}"))  # fmt: skip


def _failed(job_id: str, insts: tuple[Json, ...], inst: Json, document: Json) -> JobOutcome:
    """The outcome of a job whose instance ``inst`` failed: at its first failed step,
    else at the error naming the job (``error`` when vmrunner itself failed)."""
    label = str(inst.get("name") or job_id)
    found = md.failed_step(inst)
    if found is not None:
        step = found[1]
        conclusion = "timed_out" if step.get("timed_out") else "failure"
        return JobOutcome(job_id, insts, "failure", conclusion,
                          _describe(f"{label}: {md.step_failure(step)}"))  # fmt: skip
    error = _job_error(document, job_id)
    state: Literal["failure", "error"] = (
        "error" if error and error.get("kind") == "harness" else "failure"
    )
    why = error.get("message", "failed") if error else "failed"
    return JobOutcome(job_id, insts, state, "failure", _describe(f"{label}: {why}"))


def outcome(job_id: str, instances: Sequence[Json], document: Json) -> JobOutcome:
    """The final state of job ``job_id`` from its result entries (see the module doc)."""
    insts = tuple(instances)
    if not insts:
        return _not_run(document, job_id)
    statuses = [str(i.get("status")) for i in insts]
    for inst in insts:
        if inst.get("status") == "failure":
            return _failed(job_id, insts, inst, document)
    if "cancelled" in statuses:
        return JobOutcome(job_id, insts, "error", "cancelled", "cancelled")
    if all(s == "skipped" for s in statuses):
        reasons = [str(i["reason"]) for i in insts if i.get("reason")]
        return JobOutcome(job_id, insts, "success", "neutral" if reasons else "skipped",
                          _describe("skipped" + (f": {reasons[0]}" if reasons else "")))  # fmt: skip
    seconds = max(float(i.get("duration_s") or 0.0) for i in insts)
    many = f"{len(insts)} instances " if len(insts) > 1 else ""
    return JobOutcome(job_id, insts, "success", "success", f"{many}passed in {seconds:.0f}s")


def outcomes(document: Json, jobs: Iterable[JobRef] = ()) -> list[JobOutcome]:
    """Every job's outcome: the jobs of the document (grouped by top-level id, in
    order), then the ``jobs`` expected but absent from it (reported as not run)."""
    groups: dict[str, list[Json]] = {}
    for entry in document.get("jobs") or []:
        groups.setdefault(str(entry.get("id")).split("/")[0], []).append(entry)
    for job in jobs:
        groups.setdefault(job.id, [])
    return [outcome(job_id, insts, document) for job_id, insts in groups.items()]


@dataclass(frozen=True)
class ReportBuilder:
    """Builds the reports of one mode (``token``: commit statuses; ``app``: check runs)."""

    mode: Literal["token", "app"]
    public_url: str = ""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown reporting mode {self.mode!r} (token or app)")

    def target_url(self, facts: ItemFacts) -> str | None:
        if not self.public_url or facts.run_id is None:
            return None
        return f"{self.public_url.rstrip('/')}/runs/{facts.run_id}"

    def context(self, facts: ItemFacts, job_id: str) -> str:
        return f"vmrunner/{facts.display_name}/{job_id}"

    def status(self, facts: ItemFacts, context: str, state: str, description: str) -> Report:
        body: dict[str, Any] = {"state": state, "context": context,
                                "description": _describe(description)}  # fmt: skip
        if (url := self.target_url(facts)) is not None:
            body["target_url"] = url
        key = cut_key(f"status:{facts.repo}@{facts.sha}:{context}")
        return Report("status", facts.repo, facts.sha, key, body)

    def check(self, facts: ItemFacts, job_id: str, fields: Json, name: str = "") -> Report:
        """A check run report for job ``job_id`` (``name`` replaces the usual one)."""
        external_id = f"{facts.workflow}#{job_id}"
        body: dict[str, Any] = {"name": name or f"{facts.display_name} / {job_id}",
                                "head_sha": facts.sha, "external_id": external_id}  # fmt: skip
        if (url := self.target_url(facts)) is not None:
            body["details_url"] = url
        body.update(fields)
        key = cut_key(f"check:{facts.repo}@{facts.sha}:{facts.run_id}:{external_id}")
        return Report("check_run", facts.repo, facts.sha, key, body)

    def queued(self, facts: ItemFacts, jobs: Sequence[JobRef]) -> list[Report]:
        """``pending`` statuses / ``queued`` check runs, one per job."""
        if self.mode == "token":
            return [
                self.status(facts, self.context(facts, j.id), "pending", "queued") for j in jobs
            ]
        return [self.check(facts, j.id, {"status": "queued"}) for j in jobs]

    def started(
        self, facts: ItemFacts, jobs: Sequence[JobRef], at: str, host: str = ""
    ) -> list[Report]:
        """``pending`` "running" statuses / ``in_progress`` check runs since ``at`` (ISO)."""
        if self.mode == "token":
            text = f"running on {host}" if host else "running"
            return [self.status(facts, self.context(facts, j.id), "pending", text) for j in jobs]
        return [self.check(facts, j.id, {"status": "in_progress", "started_at": at}) for j in jobs]

    def finished(
        self, facts: ItemFacts, document: Json, jobs: Sequence[JobRef] = ()
    ) -> list[Report]:
        """The final reports from the run's result ``document``; ``jobs`` expected but
        missing from it are reported as not run."""
        out: list[Report] = []
        for result in outcomes(document, jobs):
            if self.mode == "token":
                out.append(self.status(facts, self.context(facts, result.job_id), result.state,
                                       result.description))  # fmt: skip
            else:
                out.extend(self._completed(facts, result, document))
        return out

    def _completed(self, facts: ItemFacts, result: JobOutcome, document: Json) -> list[Report]:
        title = md.cut(result.description, 255, "…")
        headline = f"{result.conclusion}: {result.description}"
        text = md.summary(headline, result.instances, document, result.job_id)
        notes = md.annotations_of(result.instances)[:MAX_ANNOTATIONS]
        batches = md.batches(notes, ANNOTATION_BATCH)
        done: dict[str, Any] = {"status": "completed", "conclusion": result.conclusion}
        if document.get("finished_at"):
            done["completed_at"] = document["finished_at"]
        first = self.check(facts, result.job_id, {**done, "output": {
            "title": title, "summary": text, "annotations": batches[0]}})  # fmt: skip
        more = [self.check(facts, result.job_id, {"output": {
            "title": title, "summary": text, "annotations": batch}}) for batch in batches[1:]]  # fmt: skip
        return [first, *more]

    def cancelled(self, facts: ItemFacts, jobs: Sequence[JobRef], reason: str) -> list[Report]:
        """``error`` statuses / ``cancelled`` check runs for jobs that will not run."""
        if self.mode == "token":
            text = f"cancelled: {reason}"
            return [self.status(facts, self.context(facts, j.id), "error", text) for j in jobs]
        output = {
            "title": _describe(f"cancelled: {reason}"),
            "summary": md.cut(f"Cancelled: {reason}"),
        }
        fields = {"status": "completed", "conclusion": "cancelled", "output": output}
        return [self.check(facts, j.id, fields) for j in jobs]

    def errors(
        self, facts: ItemFacts, message: str, line: int | None = None, col: int | None = None
    ) -> list[Report]:
        """One ``error`` status / failed check run for a workflow file that could not be
        loaded, naming the file and line."""
        where = f"{facts.workflow}" + (f" line {line}" if line else "")
        text = f"{where}: {message}"
        if self.mode == "token":
            return [self.status(facts, f"vmrunner/{facts.display_name}", "error", text)]
        output: dict[str, Any] = {"title": _describe(f"invalid workflow: {where}"),
                                  "summary": md.cut(f"**{where}**\n\n{md.fence(message)}")}  # fmt: skip
        if line:
            note: dict[str, Any] = {"path": facts.workflow, "start_line": line, "end_line": line,
                                    "annotation_level": "failure", "message": md.cut(message)}  # fmt: skip
            if col:
                note["start_column"] = note["end_column"] = col
            output["annotations"] = [note]
        fields = {"status": "completed", "conclusion": "failure", "output": output}
        return [self.check(facts, "", fields, name=facts.display_name)]
