"""Command normalisation: keep what identifies a command, drop what varies.

Two runs of "the same" command should fall together even when a version pin, a
temporary directory or a commit hash differs, so that counts accumulate. The rules,
applied in this order (each is a row in ``tests/learning/test_normalise.py``):

1. **Script shape.** A multi-line script is split into lines; blank lines and
   ``#`` comments are dropped, ``\\``-continued lines are joined, and the normalised
   lines are joined with ``"; "``. Whitespace inside a line collapses to one space.
2. **Tokens.** Each line is split like a POSIX shell would (quotes removed); a line
   that does not parse (an unclosed quote) falls back to splitting on whitespace.
   ``&&``, ``||``, ``|`` and ``;`` separate simple commands and are kept.
3. **Leading assignments.** ``NAME=value cmd`` becomes ``NAME=* cmd``.
4. **Program.** An absolute program path in a standard bin directory
   (``/usr/bin/python3``) becomes its basename (``python3``). The program itself is
   never version-masked (``python3.11`` stays ``python3.11``).
5. **Arguments** (only arguments, never the program):
   - messages: every argument of ``echo``/``printf``, and the value of ``-m``/
     ``--message`` for ``git``, becomes ``<msg>``;
   - UUIDs become ``<uuid>``; ISO dates (with an optional time) become ``<date>``;
   - temporary paths (``/tmp/…``, ``/var/tmp/…``, ``/dev/shm/…``, macOS
     ``/private/var/folders/…``, ``$TMPDIR``/``$RUNNER_TEMP`` prefixes) become
     ``<tmp>``; a home directory prefix (``/home/NAME``, ``/Users/NAME``) becomes ``~``;
   - version pins keep their operator and drop the version: ``foo==1.2`` →
     ``foo==*``, ``foo>=1,<2`` → ``foo>=*,<*``, ``left-pad@1.3.0`` → ``left-pad@*``,
     ``python:3.11-slim`` → ``python:*``, ``sha256:ab12…`` → ``sha256:*``;
     a version inside a file name (``foo-1.2.3.tar.gz``) → ``foo-*.tar.gz``; a bare
     version argument (``1.2.3``, ``v18.2.0``) → ``<ver>``;
   - hex hashes of 7 to 64 characters that contain both a digit and a letter
     (commit ids, digests) become ``<hash>``;
   - numbers that are noise: a whole-token number (with an optional unit,
     ``30``, ``2.5s``), an ``-N`` option, an ``--opt=N`` value and ``-jN`` become
     ``<n>`` (keeping the unit/option); digits inside a word (``python3``, ``-O2``,
     ``x86_64``, ``utf8``) are kept.
6. **Length.** A normalised form longer than 400 characters keeps its first 380
   characters plus ``…#`` and a short hash of the whole, so long scripts stay distinct.

``family`` gives the broad family of a command (``python3 -c``, ``pip install``,
``python3 -m pytest``, ``make test``; options before the subcommand are skipped):
the prediction backs off to it when the command itself has too little history.
These functions are pure and cached; they do not touch the environment, the file
system or the clock.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from functools import lru_cache

MAX_LEN = 400
_SEPARATORS = frozenset({"&&", "||", "|", ";", ";;", "|&"})
_BIN_DIRS = ("/usr/bin/", "/bin/", "/usr/local/bin/", "/usr/sbin/", "/sbin/")
_MESSAGE_PROGRAMS = frozenset({"echo", "printf"})
_SKIP_FOR_FAMILY = frozenset({"cd", "set", "export", "source", ".", "pushd", "popd", "true", ":"})
_SUBCOMMAND_TOOLS = frozenset(
    {
        "git",
        "pip",
        "pip3",
        "npm",
        "pnpm",
        "yarn",
        "npx",
        "cargo",
        "go",
        "docker",
        "podman",
        "apt",
        "apt-get",
        "dnf",
        "yum",
        "apk",
        "brew",
        "kubectl",
        "helm",
        "terraform",
        "poetry",
        "uv",
        "pdm",
        "hatch",
        "tox",
        "nox",
        "make",
        "gradle",
        "./gradlew",
        "mvn",
        "dotnet",
        "gh",
        "systemctl",
        "conda",
        "bundle",
        "gem",
        "rustup",
        "nix",
        "bazel",
        "just",
        "composer",
        "deno",
        "bun",
        "cmake",
        "ctest",
        "vmrunner",
        "sudo",
    }
)

_ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_UUID = re.compile(
    r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
)
_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}(?:[T_ ]\d{2}[:.]?\d{2}(?:[:.]?\d{2}(?:\.\d+)?)?Z?)?\b")
_TMP = re.compile(
    r"(?:/private/var/folders/|/var/tmp/|/tmp/|/dev/shm/|\$\{?(?:TMPDIR|TMP|TEMP|RUNNER_TEMP)\}?/?"
    r"|[A-Za-z]:\\[^\s]*?\\Temp\\)[^\s'\",;:]*"
)
_TMP_BARE = re.compile(r"^(?:/tmp|/var/tmp|/dev/shm)/?$")
_HOME = re.compile(r"(?:/home|/Users)/[^/\s]+")
_VER = r"v?\d+(?:\.[0-9A-Za-z*]+)*(?:[-+~][0-9A-Za-z.]+)?"
_PIN = re.compile(r"(===|==|~=|!=|>=|<=|>|<|\^|~)\s*" + _VER)
_NPM_AT = re.compile(r"(?<=[A-Za-z0-9_\-])@[\^~]?" + _VER + r"$")
_IMAGE_TAG = re.compile(r"^([a-z0-9][a-z0-9._/\-]*):" + r"(?:v?\d[\w.\-]*|latest-\d[\w.\-]*)$")
_DIGEST = re.compile(r"\b(sha1|sha256|sha512|md5):[0-9a-fA-F]{7,128}\b")
_FILE_VER = re.compile(
    r"(?<=[A-Za-z])([-_])v?\d+(?:\.\d+)+(?:[-.]?(?:a|b|rc|dev|post)\d*)?(?=[.\-_])"
)
_BARE_VER = re.compile(r"^" + r"v?\d+(?:\.\d+)+(?:[-.]?(?:a|b|rc|dev|post|alpha|beta)\.?\d*)?$")
_HEX = re.compile(r"(?<![0-9A-Za-z])[0-9a-fA-F]{7,64}(?![0-9A-Za-z])")
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?([a-zA-Z%]{0,3})$")
_OPT_NUMBER = re.compile(r"^(--?[A-Za-z][\w-]*=)\d+(?:\.\d+)?([a-zA-Z%]{0,3})$")
_DASH_NUMBER = re.compile(r"^-(\d+)$")
_JOBS = re.compile(r"^-j\d+$")
_PROG_VERSION = re.compile(r"(?<=[A-Za-z])(\d*)\.\d+$")
_SUBCOMMAND = re.compile(r"^[a-z][a-z0-9_\-]*$")


def _mask_hex(match: re.Match[str]) -> str:
    text = match.group(0)
    has_digit = any(c.isdigit() for c in text)
    has_alpha = any(c.isalpha() for c in text)
    return "<hash>" if has_digit and has_alpha else text


def _mask_argument(token: str) -> str:
    """Apply rule 5 (except messages) to one argument token."""
    if _TMP_BARE.match(token):
        return "<tmp>"
    token = _UUID.sub("<uuid>", token)
    token = _DATE.sub("<date>", token)
    token = _TMP.sub("<tmp>", token)
    token = _HOME.sub("~", token)
    token = _DIGEST.sub(r"\1:*", token)
    if _BARE_VER.match(token):
        return "<ver>"
    token = _IMAGE_TAG.sub(r"\1:*", token)
    token = _PIN.sub(r"\1*", token)
    token = _NPM_AT.sub("@*", token)
    token = _FILE_VER.sub(r"\1*", token)
    token = _HEX.sub(_mask_hex, token)
    return _mask_number(token)


def _mask_number(token: str) -> str:
    if _JOBS.match(token):
        return "-j<n>"
    if _DASH_NUMBER.match(token):
        return "-<n>"
    if m := _NUMBER.match(token):
        return "<n>" + m.group(1)
    if m := _OPT_NUMBER.match(token):
        return m.group(1) + "<n>" + m.group(2)
    return token


def _split_line(line: str) -> list[str]:
    """Shell-like split keeping ``;`` and ``|`` runs as tokens; whitespace split on error."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        return list(lexer)
    except ValueError:
        return line.split()


def _simple_commands(tokens: list[str]) -> list[list[str]]:
    """Split a token list at separators; separators become one-token groups."""
    groups: list[list[str]] = [[]]
    for tok in tokens:
        if tok in _SEPARATORS:
            groups.append([tok])
            groups.append([])
        else:
            groups[-1].append(tok)
    return [g for g in groups if g]


def _normalise_simple(tokens: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(tokens) and _ASSIGN.match(tokens[i]):
        out.append(tokens[i].split("=", 1)[0] + "=*")
        i += 1
    if i == len(tokens):
        return out
    prog = tokens[i]
    if prog.startswith(_BIN_DIRS):
        prog = prog.rsplit("/", 1)[1]
    out.append(prog)
    args = tokens[i + 1 :]
    if prog in _MESSAGE_PROGRAMS:
        return [*out, "<msg>"] if args else out
    masked_next = False
    for arg in args:
        if masked_next:
            out.append("<msg>")
            masked_next = False
            continue
        if prog == "git" and arg in ("-m", "--message"):
            masked_next = True
        elif prog == "git" and arg.startswith("--message="):
            out.append("--message=<msg>")
            continue
        out.append(_mask_argument(arg))
    return out


def _quote(token: str) -> str:
    if token and not any(c.isspace() or c in "'\"" for c in token):
        return token
    return shlex.quote(token)


def _logical_lines(command: str) -> list[str]:
    joined = re.sub(r"\\\r?\n", " ", command)
    lines = (ln.strip() for ln in joined.splitlines())
    return [ln for ln in lines if ln and not ln.startswith("#")]


def _cap(text: str) -> str:
    if len(text) <= MAX_LEN:
        return text
    digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return text[:380] + "…#" + digest


@lru_cache(maxsize=131072)
def normalise(command: str) -> str:
    """The normalised form of ``command`` (see the module docstring for the rules).

    Never raises; an empty or comment-only command normalises to ``""``.
    """
    parts: list[str] = []
    for line in _logical_lines(command):
        tokens: list[str] = []
        for group in _simple_commands(_split_line(line)):
            tokens.extend(group if group[0] in _SEPARATORS else _normalise_simple(group))
        if tokens:
            parts.append(" ".join(_quote(t) for t in tokens))
    return _cap("; ".join(parts))


def _family_program(prog: str) -> str:
    if prog.startswith(_BIN_DIRS):
        prog = prog.rsplit("/", 1)[1]
    return _PROG_VERSION.sub(r"\1", prog)


def _family_of(tokens: list[str]) -> str:
    while tokens and _ASSIGN.match(tokens[0]):
        tokens = tokens[1:]
    if not tokens:
        return ""
    prog = _family_program(tokens[0])
    rest = tokens[1:]
    if prog == "sudo" and rest:
        return _family_of(rest)
    if rest and rest[0] == "-c":
        return f"{prog} -c"
    if len(rest) >= 2 and rest[0] == "-m":
        sub = f" {rest[2]}" if len(rest) > 2 and _SUBCOMMAND.match(rest[2]) else ""
        return f"{prog} -m {rest[1]}{sub}" if rest[1] == "pip" else f"{prog} -m {rest[1]}"
    positional = [t for t in rest if not t.startswith("-")]
    if positional and prog in _SUBCOMMAND_TOOLS and _SUBCOMMAND.match(positional[0]):
        return f"{prog} {positional[0]}"
    return prog


@lru_cache(maxsize=131072)
def family(command: str) -> str:
    """The family of ``command``: its first significant program plus its subcommand.

    Leading ``cd``/``set``/``export`` commands and ``NAME=value`` assignments are
    skipped; the program's version suffix is dropped (``python3.11`` → ``python3``).
    Returns ``""`` for an empty command.
    """
    for line in _logical_lines(command):
        for group in _simple_commands(_split_line(line)):
            if group[0] in _SEPARATORS:
                continue
            body = [t for t in group if not _ASSIGN.match(t)] or group
            if _family_program(body[0]) in _SKIP_FOR_FAMILY:
                continue
            return _family_of(group)
    return ""


def diff_key(command: str) -> str:
    """The form used to compare two runs' steps: whitespace collapsed, temporary paths
    masked, versions and hashes kept (a changed pin is exactly what a fix looks like)."""
    return _TMP.sub("<tmp>", " ".join(command.split()))
