"""The dotenv files of ``vmrunner run`` (``--env-file``, ``--secret-file``, ``--var-file``,
``--input-file``) and the ``K[=V]`` flags, as act users expect them (python-dotenv)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmrunner.errors import ConfigError
from vmrunner.services.checks import check_event, flag_pairs, read_dotenv
from vmrunner.services.runrequest import RunFlags, run_request

PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\nkqhkiG9w0BAQEF\n-----END PRIVATE KEY-----"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A=1\n", {"A": "1"}),
        ("D=x # c\n", {"D": "x"}),  # a comment after an unquoted value is not the value
        ("D='x # c'\n", {"D": "x # c"}),
        ('D="x # c"\n', {"D": "x # c"}),
        ("# only a comment\n\nA=1\n", {"A": "1"}),
        ("export A=1\n", {"A": "1"}),
        ('A="a\\nb"\n', {"A": "a\nb"}),  # escapes in double quotes
        ("A='a\\nb'\n", {"A": "a\\nb"}),  # none in single quotes
        (f'KEY="{PEM}"\nNEXT=1\n', {"KEY": PEM, "NEXT": "1"}),  # a multi-line PEM key
        (f"KEY='{PEM}'\n", {"KEY": PEM}),
        ("A = spaced \n", {"A": "spaced"}),
        ("A=1\nB=${A}2\n", {"A": "1", "B": "12"}),  # ${VAR} from the lines above
        ("A=1\nB='${A}2'\n", {"A": "1", "B": "${A}2"}),  # single quotes are literal
        ("B=${FROM_ENV}\n", {"B": "env-value"}),
        ("BARE\n", {"BARE": ""}),
        ("A=1\nA=2\n", {"A": "2"}),
        ('A="quoted \\"inner\\""\n', {"A": 'quoted "inner"'}),
        ("A=\n", {"A": ""}),
        ("A=p@ss=word\n", {"A": "p@ss=word"}),
    ],
)
def test_dotenv_files_parse_as_act_users_expect(
    tmp_path: Path, text: str, expected: dict[str, str]
) -> None:
    path = tmp_path / ".secrets"
    path.write_text(text)
    assert dict(read_dotenv(path, "--secret-file", {"FROM_ENV": "env-value"})) == expected


@pytest.mark.parametrize(
    ("text", "line"), [('A="unterminated\n', 1), ("A=1\nB='x\n", 2), ("A=1\n=novalue\n", 2)]
)
def test_an_unparsable_line_is_an_error_naming_file_and_line(
    tmp_path: Path, text: str, line: int
) -> None:
    path = tmp_path / "f.env"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"--env-file {path}:{line}: cannot parse"):
        read_dotenv(path, "--env-file")


def test_a_missing_file_is_an_error_naming_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--var-file .*nope"):
        read_dotenv(tmp_path / "nope", "--var-file")


_KEY = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)
_VALUE = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters='\\"$'), max_size=30
)


@given(st.dictionaries(_KEY, _VALUE, max_size=6))
def test_double_quoted_values_round_trip(values: dict[str, str]) -> None:
    import tempfile

    text = "".join(f'{k}="{v}"\n' for k, v in values.items())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ".env"
        path.write_text(text)
        assert dict(read_dotenv(path, "--env-file", {})) == values


@pytest.mark.parametrize(
    ("items", "bare", "environ", "expected"),
    [
        (["A=1", "B=x=y"], "error", {}, (("A", "1"), ("B", "x=y"))),
        (["A="], "error", {}, (("A", ""),)),
        (["TOKEN"], "environ", {"TOKEN": "t0k"}, (("TOKEN", "t0k"),)),  # act's -s K
        (["HOME_X"], "environ-or-empty", {}, (("HOME_X", ""),)),
        (["HOME_X"], "environ-or-empty", {"HOME_X": "h"}, (("HOME_X", "h"),)),
    ],
)
def test_flag_pairs(
    items: list[str], bare: str, environ: dict[str, str], expected: tuple[tuple[str, str], ...]
) -> None:
    assert flag_pairs(items, "--x", bare=bare, environ=environ) == expected


@pytest.mark.parametrize(
    ("items", "bare", "message"),
    [
        (["A"], "error", "--x expects K=V, got 'A'"),
        (["=v"], "error", "--x expects K=V"),
        (["TOKEN"], "environ", r"--x TOKEN: no value given and \$TOKEN is not set"),
    ],
)
def test_flag_pairs_errors(items: list[str], bare: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        flag_pairs(items, "--x", bare=bare, environ={})


def test_files_layer_under_flags_and_default_names_are_read_when_present(tmp_path: Path) -> None:
    """act: .secrets, .env, .vars and .input in the -C directory are read when present;
    a flag wins over the file; relative paths are relative to -C."""
    (tmp_path / ".secrets").write_text("S1=file\nS2=file\n")
    (tmp_path / ".env").write_text("E=file # comment\n")
    (tmp_path / ".vars").write_text("V=file\n")
    (tmp_path / "in.env").write_text("I=file\n")
    flags = RunFlags(directory=tmp_path, secrets=("S2=flag", "S3"), input_file=Path("in.env"),
                     vars=("W=flag",), matrix=("os:linux",), platforms=("macos-latest=debian",))  # fmt: skip
    req = run_request(flags, {"S3": "from-env"})
    assert dict(req.secrets) == {"S1": "file", "S2": "flag", "S3": "from-env"}
    assert dict(req.env) == {"E": "file"}
    assert dict(req.vars) == {"V": "file", "W": "flag"}
    assert dict(req.inputs) == {"I": "file"}
    assert req.matrix == (("os", "linux"),)
    assert req.platforms == (("macos-latest", "debian"),)
    assert req.workdir == tmp_path.resolve()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            RunFlags(event="pushh"),
            "unknown event 'pushh' \\(did you mean 'push'\\?\\): known events are .*workflow_dispatch",
        ),
        (RunFlags(event="deploy"), "unknown event 'deploy'"),
        (RunFlags(secret_file=Path("missing.env")), "--secret-file .*missing.env"),
        (RunFlags(concurrent_jobs=0), "--concurrent-jobs must be at least 1"),
        (RunFlags(matrix=("os=linux",)), "--matrix expects K:V"),
        (RunFlags(platforms=("macos-latest",)), "-P/--platform expects K=V"),
        (RunFlags(inputs=("name",)), "--input expects K=V"),
        (RunFlags(directory=Path("/nonexistent-dir")), "-C/--directory"),
    ],
)
def test_bad_flags_are_errors_naming_the_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flags: RunFlags, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=message):
        run_request(flags, {})


@pytest.mark.parametrize(
    "event", ["push", "pull_request", "workflow_dispatch", "schedule", "release"]
)
def test_known_events_pass(event: str) -> None:
    check_event(event)
