"""The systest failure taxonomy: pure classification of build, boot and runtime output.

Every function takes text (tool output, a console log, ``systemctl`` output) and
returns ``SystestError`` values or parsed facts; none runs anything or reads a
clock. Covered:

* apt/mmdebstrap (Debian build): ``network_error`` (url, host), ``hash_mismatch``,
  ``build_error`` (package);
* Nix 2.8 and later: ``eval_error`` (file, line, column), ``network_error``
  (url, host, what), ``hash_mismatch`` (derivation, specified, got),
  ``build_error`` (derivation, log tail; the ``builder for ... failed`` message of
  Nix <= 2.18 and the ``Cannot build ... Reason: builder failed`` one of later Nix),
  ``kvm_unavailable`` (a derivation needs the ``kvm`` system feature);
* the serial console: ``kernel_panic``, ``emergency_mode``, and which units
  started, failed or were still starting (systemd's status lines);
* ``systemctl list-jobs`` / ``list-units`` / ``show`` output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from vmrunner.systest.result import SystestError

ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
STORE_SOURCE_RE = re.compile(r"^/nix/store/[0-9a-z]{32}-source/")


def strip_ansi(text: str) -> str:
    return ANSI_RE.sub("", text).replace("\r", "")


def tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def _host(url: str) -> str | None:
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


# -- Debian: apt inside mmdebstrap ------------------------------------------------------

APT_FETCH_RE = re.compile(r"^[EW]: Failed to fetch (\S+)\s+(.*)$", re.M)
APT_ERR_RE = re.compile(r"^Err:\d+ (\S+) (.*)\n\s+(.*)$", re.M)
APT_HASH_RE = re.compile(r"Hash Sum mismatch|Hashes of expected file", re.I)
APT_NOPKG_RE = re.compile(
    r"^E: (?:Unable to locate package (\S+)|Package '([^']+)' has no installation candidate)", re.M
)
APT_NETWORK_HINT_RE = re.compile(
    r"Could not connect|Connection refused|Could not resolve|Temporary failure resolving|"
    r"timed out|Network is unreachable|No route to host|Connection failed|Unable to connect",
    re.I,
)


def classify_apt(output: str) -> SystestError:
    """Classify a failed mmdebstrap/apt run; the first network error wins."""
    text = strip_ansi(output)
    m = APT_FETCH_RE.search(text)
    if m and APT_HASH_RE.search(m.group(2)):
        return SystestError("hash_mismatch", f"apt: hash mismatch fetching {m.group(1)}",
                            details={"url": m.group(1), "host": _host(m.group(1)),
                                     "log_tail": tail(text)})  # fmt: skip
    if m and APT_NETWORK_HINT_RE.search(m.group(2)):
        url, reason = m.group(1), m.group(2).strip()
        return _apt_network(url, reason, text)
    e = APT_ERR_RE.search(text)
    if e and APT_NETWORK_HINT_RE.search(e.group(3)):
        return _apt_network(e.group(1), e.group(3).strip(), text)
    if APT_HASH_RE.search(text):
        return SystestError(
            "hash_mismatch", "apt: hash sum mismatch", details={"log_tail": tail(text)}
        )
    p = APT_NOPKG_RE.search(text)
    if p:
        pkg = p.group(1) or p.group(2)
        return SystestError("build_error", f"package {pkg!r} is not available in the configured sources",
                            details={"package": pkg, "log_tail": tail(text)})  # fmt: skip
    last = next((ln for ln in reversed(text.splitlines()) if ln.startswith("E: ")), "")
    return SystestError("build_error", last[3:] or "the root file system build failed",
                        details={"package": None, "log_tail": tail(text)})  # fmt: skip


def _apt_network(url: str, reason: str, text: str) -> SystestError:
    host = _host(url)
    return SystestError(
        "network_error",
        f"cannot fetch {url}: {reason}",
        details={"url": url, "host": host, "fetching": f"apt repository {url.split('/dists/')[0]}",
                 "reason": reason, "log_tail": tail(text)},
    )  # fmt: skip


# -- Nix ------------------------------------------------------------------------------

NIX_DOWNLOAD_RE = re.compile(
    r"unable to download '([^']+)': (.+?)(?: \(\d+\))?(?:; retrying in \d+ ms)?$", re.M
)
NIX_AT_RE = re.compile(r"^\s*at (.+?):(\d+):(\d+):?\s*$", re.M)
NIX_HASH_RE = re.compile(
    r"hash mismatch in fixed-output derivation '([^']+)':\s*specified:\s*(\S+)\s*got:\s*(\S+)"
)
NIX_BUILDER_OLD_RE = re.compile(
    r"builder for '([^']+)' failed (with exit code \d+|to produce output path[^\n;]*)"
)
NIX_BUILDER_NEW_RE = re.compile(
    r"Cannot build '([^']+)'\.\s*\n\s*Reason: builder failed (with exit code \d+)"
)
NIX_FEATURES_RE = re.compile(
    r"a '([^']+)' with features \{([^}]*)\} is required to build '([^']+)', "
    r"but I am a '[^']+' with features \{([^}]*)\}"
)
NIX_LOG_LINE_RE = re.compile(r"^\s*(?:> |[\w.+-]+> )(.*)$", re.M)


def flake_relative(path: str) -> str:
    """A file in a flake's store copy as a path relative to the flake (else unchanged)."""
    return STORE_SOURCE_RE.sub("", path)


def nix_download_failure(line: str) -> tuple[str, str] | None:
    """(url, reason) if ``line`` reports a failed download (a warning counts: fail fast)."""
    m = NIX_DOWNLOAD_RE.search(strip_ansi(line))
    return (m.group(1), m.group(2)) if m else None


def _what_fetched(url: str) -> str:
    if url.endswith(("/nix-cache-info", ".narinfo")) or "/nar/" in url:
        return f"binary cache (substituter) {url.rsplit('/', 1)[0] if '/nar/' not in url else url.split('/nar/')[0]}"
    return f"source {url}"


def classify_nix(output: str) -> SystestError:
    """Classify the output of a failed ``nix build`` / ``nix-build`` / ``nix eval``."""
    text = strip_ansi(output)
    dl = NIX_DOWNLOAD_RE.search(text)
    if dl:
        url, reason = dl.group(1), dl.group(2)
        return SystestError("network_error", f"cannot download {url}: {reason}",
                            details={"url": url, "host": _host(url), "fetching": _what_fetched(url),
                                     "reason": reason, "log_tail": tail(text)})  # fmt: skip
    h = NIX_HASH_RE.search(text)
    if h:
        return SystestError("hash_mismatch", f"hash mismatch in fixed-output derivation {h.group(1)}",
                            details={"derivation": h.group(1), "specified": h.group(2), "got": h.group(3),
                                     "log_tail": tail(text)})  # fmt: skip
    f = NIX_FEATURES_RE.search(text)
    if f:
        return _features(f, text)
    b = NIX_BUILDER_NEW_RE.search(text) or NIX_BUILDER_OLD_RE.search(text)
    if b:
        drv = b.group(1)
        logs = [ln for ln in NIX_LOG_LINE_RE.findall(text[b.end() :] or "")] or _builder_log(
            text, drv
        )
        return SystestError("build_error", f"builder for {drv} failed {b.group(2)}",
                            details={"derivation": drv, "package": _drv_name(drv),
                                     "log_tail": "\n".join(logs[-30:])})  # fmt: skip
    return _eval_error(text)


def _drv_name(drv: str) -> str:
    return re.sub(r"^/nix/store/[0-9a-z]{32}-|\.drv$", "", drv)


def _builder_log(text: str, drv: str) -> list[str]:
    """Builder output Nix printed before its error (``nix-build`` and ``-L`` styles)."""
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if f"building '{drv}'" in ln), -1)
    out = []
    for ln in lines[start + 1 :]:
        if ln.startswith(("error:", "warning:", "building '")):
            break
        out.append(re.sub(r"^[\w.+-]+> ", "", ln))
    return out


def _features(f: re.Match[str], text: str) -> SystestError:
    required = [s.strip() for s in f.group(2).split(",") if s.strip()]
    have = {s.strip() for s in f.group(4).split(",") if s.strip()}
    missing = [s for s in required if s not in have]
    kind = "kvm_unavailable" if "kvm" in missing else "build_error"
    return SystestError(kind, f"{f.group(3)} needs system features {{{', '.join(missing)}}} that this "
                        "machine lacks" + (" (no functional KVM)" if kind == "kvm_unavailable" else ""),
                        details={"derivation": f.group(3), "missing_features": missing,
                                 "log_tail": tail(text)})  # fmt: skip


def _eval_error(text: str) -> SystestError:
    first = next((ln for ln in text.splitlines() if ln.startswith("error:")), "")
    msg = first.removeprefix("error:").strip() or "nix failed"
    at = NIX_AT_RE.search(text)
    file: str | None = None
    line: int | None = None
    col: int | None = None
    if at:
        file, line, col = flake_relative(at.group(1)), int(at.group(2)), int(at.group(3))
    return SystestError("eval_error", msg, details={"file": file, "line": line, "column": col,
                                                    "log_tail": tail(text)})  # fmt: skip


# -- the serial console ------------------------------------------------------------------

PANIC_RE = re.compile(r"Kernel panic - not syncing:?.*")
EMERGENCY_RE = re.compile(
    r"You are in (?:emergency|rescue) mode|Reached target (?:emergency\.target|Emergency Mode)|"
    r"Started (?:emergency\.service|Emergency Shell)|Entering emergency mode"
)
OK_RE = re.compile(
    r"\[\s*OK\s*\] (?:Started|Reached target|Finished|Mounted|Listening on) (\S+?\.\w+)\b"
)
FAILED_RE = re.compile(r"\[FAILED\] Failed to (?:start|mount|listen on) (\S+?\.\w+)\b")
STARTING_RE = re.compile(r"^\s+(?:Starting|Mounting) (\S+?\.\w+)\b", re.M)
START_JOB_RE = re.compile(r"A (?:start|stop) job is running for (.+?) \(")


@dataclass(frozen=True)
class ConsoleUnits:
    """What systemd's status lines on the console said about units."""

    active: tuple[str, ...]
    failed: tuple[str, ...]
    pending: tuple[str, ...]
    running_jobs: tuple[str, ...]  # descriptions from "A start job is running for ..."


def console_units(console: str) -> ConsoleUnits:
    text = strip_ansi(console)
    ok = list(dict.fromkeys(OK_RE.findall(text)))
    failed = list(dict.fromkeys(FAILED_RE.findall(text)))
    started = set(ok) | set(failed)
    pending = [u for u in dict.fromkeys(STARTING_RE.findall(text)) if u not in started]
    jobs = list(dict.fromkeys(START_JOB_RE.findall(text)))
    return ConsoleUnits(tuple(ok), tuple(failed), tuple(pending), tuple(jobs))


def classify_console(console: str) -> SystestError | None:
    """``kernel_panic`` or ``emergency_mode`` if the console shows one, else None."""
    text = strip_ansi(console)
    p = PANIC_RE.search(text)
    if p:
        return SystestError(
            "kernel_panic", p.group(0).strip(), details={"console_tail": tail(text)}
        )
    e = EMERGENCY_RE.search(text)
    if e:
        failed = list(console_units(text).failed)
        return SystestError("emergency_mode", "the system entered emergency mode" +
                            (f" after {', '.join(failed)} failed" if failed else ""),
                            details={"failed_units": failed, "console_tail": tail(text)})  # fmt: skip
    return None


# -- systemctl output ----------------------------------------------------------------------


def list_jobs_units(output: str) -> list[str]:
    """Units with a queued or running job (``systemctl list-jobs --no-legend --plain``)."""
    units = []
    for ln in output.splitlines():
        parts = ln.split()
        if len(parts) >= 4 and parts[0].isdigit():
            units.append(parts[1])
    return units


def list_units_names(output: str) -> list[str]:
    """Unit names from ``systemctl list-units --no-legend --plain`` (first column)."""
    rows = (ln.strip().lstrip("●*").split() for ln in output.splitlines())
    return [row[0] for row in rows if row]


def parse_show(output: str) -> dict[str, str]:
    """``systemctl show -p A,B unit`` output as a dict."""
    return dict(ln.split("=", 1) for ln in output.splitlines() if "=" in ln)


def service_failed(unit: str, show: dict[str, str], journal: str) -> SystestError:
    result = show.get("Result", "")
    status = show.get("ExecMainStatus", "")
    code = show.get("ExecMainCode", "")
    msg = f"{unit} failed (result {result or 'unknown'}, exit status {status or '?'})"
    return SystestError(
        "service_failed", msg,
        details={"unit": unit, "result": result, "exit_status": int(status) if status.isdigit() else None,
                 "exit_code": code, "journal_tail": tail(journal, 20)},
    )  # fmt: skip


def journal_matches(journal: str, pattern: str) -> list[str]:
    """Journal lines matching ``pattern`` (the actual value of a failed journal_lacks)."""
    rx = re.compile(pattern)
    return [ln for ln in journal.splitlines() if rx.search(ln)]
