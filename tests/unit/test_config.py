"""Settings precedence: defaults < config file < environment < overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmrunner.config import load_settings
from vmrunner.errors import ConfigError


def test_defaults_follow_xdg(tmp_path: Path) -> None:
    env = {
        "XDG_DATA_HOME": str(tmp_path / "d"),
        "XDG_CACHE_HOME": str(tmp_path / "c"),
        "XDG_CONFIG_HOME": str(tmp_path / "x"),
    }
    s = load_settings(env=env)
    assert s.state_dir == tmp_path / "d" / "vmrunner"
    assert s.cache_dir == tmp_path / "c" / "vmrunner"
    assert s.db_url == f"sqlite:///{tmp_path / 'd' / 'vmrunner' / 'vmrunner.db'}"


def test_file_then_env_then_overrides(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'state_dir = "{tmp_path / "file-state"}"\ncpus = 4\nmemory_mib = 2048\n')
    env = {"VMRUNNER_CONFIG": str(cfg), "VMRUNNER_CACHE": str(tmp_path / "env-cache")}
    s = load_settings(env=env)
    assert s.state_dir == tmp_path / "file-state"
    assert s.cache_dir == tmp_path / "env-cache"
    assert (s.cpus, s.memory_mib) == (4, 2048)
    env["VMRUNNER_HOME"] = str(tmp_path / "env-state")
    assert load_settings(env=env).state_dir == tmp_path / "env-state"
    assert load_settings({"cpus": 1}, env=env).cpus == 1


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("cpus = 'many'", "cpus must be an integer"),
        ("colour = 1", "unknown setting 'colour'"),
        ("cpus = ", "config.toml"),
    ],
)
def test_bad_config_file_names_the_problem(tmp_path: Path, content: str, needle: str) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(content)
    with pytest.raises(ConfigError, match=needle):
        load_settings(env={"VMRUNNER_CONFIG": str(cfg), "VMRUNNER_HOME": str(tmp_path)})
