"""``vmrunner token create|list|revoke``: bearer tokens of the HTTP API (``vmrunner serve``).

A token's secret is printed once, at creation; only its hash is kept. ``read`` scope
reads (GETs); ``write`` scope also submits, cancels and reruns.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from vmrunner.cli_base import _fail, _settings, make_console
from vmrunner.errors import VmrunnerError

if TYPE_CHECKING:
    from vmrunner.services.core import Services

token_app = typer.Typer(help="Bearer tokens of the HTTP API.", no_args_is_help=True)
out = make_console()
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _services() -> Services:
    from vmrunner.services.core import Services

    return Services(_settings())


def _when(ts: float | None) -> str:
    return "-" if ts is None else dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


@token_app.command("create")
def create(
    scope: Annotated[str, typer.Option(help="read (GETs) or write (also POSTs).")] = "read",
    name: Annotated[str | None, typer.Option(help="A name to know it by (unique).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a token and print its secret (shown this once only)."""
    from vmrunner.services.tokens import create_token

    try:
        with _services() as services:
            info, secret = create_token(services, name, scope)
    except VmrunnerError as exc:
        raise _fail(exc) from exc
    if as_json:
        print(json.dumps({**info.to_dict(), "token": secret}, indent=2))
        return
    out.print(f"token {info.id} ({info.name}, scope {info.scope}); its secret, shown once:")
    print(secret)


@token_app.command("list")
def list_cmd(as_json: JsonFlag = False) -> None:
    """Every token (never their secrets)."""
    from vmrunner.services.tokens import list_tokens

    try:
        with _services() as services:
            found = list_tokens(services)
    except VmrunnerError as exc:
        raise _fail(exc) from exc
    if as_json:
        print(json.dumps([t.to_dict() for t in found], indent=2))
        return
    table = Table("id", "name", "scope", "created", "last used", "revoked")
    for t in found:
        table.add_row(t.id, t.name, t.scope, _when(t.created_at), _when(t.last_used_at),
                      "yes" if t.revoked else "no")  # fmt: skip
    out.print(table)


@token_app.command("revoke")
def revoke(
    token: Annotated[str, typer.Argument(help="The token's id or name.")],
    as_json: JsonFlag = False,
) -> None:
    """Revoke a token: it authenticates nothing from now on."""
    from vmrunner.services.tokens import revoke_token

    try:
        with _services() as services:
            info = revoke_token(services, token)
    except VmrunnerError as exc:
        raise _fail(exc) from exc
    if as_json:
        print(json.dumps(info.to_dict(), indent=2))
        return
    out.print(f"token {info.id} ({info.name}) revoked")
