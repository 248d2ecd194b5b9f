"""The ``debian_mirror`` and ``debian_security_mirror`` settings reach the apt sources of
every image (the built-in ones and systest recipes) and the image's cache key."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmrunner.config import load_settings
from vmrunner.errors import ConfigError
from vmrunner.images.builder import mmdebstrap_argv
from vmrunner.images.idmap import IdRange
from vmrunner.images.recipe import (
    BUILTIN_RECIPES,
    DEFAULT_MIRROR,
    DEFAULT_SECURITY_MIRROR,
    Mirrors,
    builtin_recipes,
    mirrors_from,
)
from vmrunner.systest.recipe import load_text

PORT = 18093  # only written into apt source lines: nothing connects to it here


def _settings_file(tmp_path: Path, main: str, security: str) -> dict[str, str]:
    """The environment of a user whose config file sets both mirrors."""
    config = tmp_path / "config.toml"
    config.write_text(f'debian_mirror = "{main}"\ndebian_security_mirror = "{security}"\n')
    return {"VMRUNNER_CONFIG": str(config), "VMRUNNER_HOME": str(tmp_path / "state")}


def _expected_sources(main: str, security: str) -> list[str]:
    return [
        f"deb {main} bookworm main",
        f"deb {main} bookworm-updates main",
        f"deb {security} bookworm-security main",
    ]


@pytest.mark.parametrize(
    ("main", "security"),
    [
        (f"http://127.0.0.1:{PORT}/debian", f"http://127.0.0.1:{PORT}/debian-security"),
        ("file:///srv/mirror/debian", "file:///srv/mirror/debian-security"),
    ],
)
def test_the_builtin_image_bootstraps_from_the_configured_mirrors(
    tmp_path: Path, main: str, security: str
) -> None:
    settings = load_settings(env=_settings_file(tmp_path, main, security))
    recipe = builtin_recipes(mirrors_from(settings))["debian"]
    argv = mmdebstrap_argv(recipe, tmp_path / "base.tar", ids=IdRange(100000, 200000))
    i = argv.index(str(tmp_path / "base.tar"))
    assert argv[i - 1] == "bookworm"
    assert argv[i + 1 :] == _expected_sources(main, security)
    assert not any("deb.debian.org" in a for a in argv)


def test_a_systest_recipe_bootstraps_from_the_configured_mirrors(tmp_path: Path) -> None:
    main, security = f"http://127.0.0.1:{PORT}/debian", f"http://127.0.0.1:{PORT}/sec"
    settings = load_settings(overrides={"debian_mirror": main, "debian_security_mirror": security},
                             env={"VMRUNNER_HOME": str(tmp_path)})  # fmt: skip
    extra = "deb http://127.0.0.1:9/extra bookworm main"
    text = f'name: web\npackages: [nginx]\nsources: ["{extra}"]\n'
    recipe = load_text(text, "web.yml", mirrors_from(settings)).image
    argv = mmdebstrap_argv(recipe, tmp_path / "t.tar", ids=IdRange(100000, 200000))
    assert argv[argv.index(str(tmp_path / "t.tar")) + 1 :] == [
        *_expected_sources(main, security),
        extra,
    ]


def test_the_default_mirrors_leave_every_digest_as_it_was() -> None:
    """Existing caches stay valid: the default settings give the recipes of before."""
    settings = load_settings(env={"VMRUNNER_HOME": "/nonexistent"})
    assert (settings.debian_mirror, settings.debian_security_mirror) == (
        DEFAULT_MIRROR,
        DEFAULT_SECURITY_MIRROR,
    )
    assert builtin_recipes(mirrors_from(settings)) == BUILTIN_RECIPES
    assert builtin_recipes() == BUILTIN_RECIPES
    assert load_text("name: a\n", mirrors=mirrors_from(settings)) == load_text("name: a\n")


_host = st.from_regex(r"[a-z][a-z0-9]{0,10}(\.[a-z]{2,5})?(:[0-9]{2,5})?", fullmatch=True)
_url = st.builds(lambda scheme, host, path: f"{scheme}://{host}/{path}",
                 st.sampled_from(["http", "https", "file"]), _host,
                 st.from_regex(r"[a-z0-9/_-]{0,20}", fullmatch=True))  # fmt: skip


@settings(deadline=None)  # digests read the guest files: no timing on a shared machine
@given(a=st.tuples(_url, _url), b=st.tuples(_url, _url))
def test_different_mirrors_give_different_image_and_base_keys(
    a: tuple[str, str], b: tuple[str, str]
) -> None:
    ra = builtin_recipes(Mirrors(*a))["debian"]
    rb = builtin_recipes(Mirrors(*b))["debian"]
    assert (ra.digest() == rb.digest()) == (a == b)
    assert (ra.base_digest() == rb.base_digest()) == (a == b)
    sa = load_text("name: s\n", mirrors=Mirrors(*a)).image
    sb = load_text("name: s\n", mirrors=Mirrors(*b)).image
    assert (sa.digest() == sb.digest()) == (a == b)


@pytest.mark.parametrize(
    ("main", "security", "named"),
    [
        ("", DEFAULT_SECURITY_MIRROR, "debian_mirror"),
        ("deb.debian.org/debian", DEFAULT_SECURITY_MIRROR, "debian_mirror"),
        ("http://x/debian bookworm main", DEFAULT_SECURITY_MIRROR, "debian_mirror"),
        (DEFAULT_MIRROR, "ssh://host/sec", "debian_security_mirror"),
    ],
)
def test_a_mirror_that_is_not_a_url_is_a_config_error_naming_the_setting(
    tmp_path: Path, main: str, security: str, named: str
) -> None:
    settings = load_settings(env=_settings_file(tmp_path, main, security))
    with pytest.raises(ConfigError, match=named):
        mirrors_from(settings)
