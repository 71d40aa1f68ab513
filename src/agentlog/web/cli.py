"""`agentlog gateway`: the web gateway in uvicorn, and the command line `up` supervises it with."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3000
# An open SSE stream never ends by itself; past this many seconds a shutdown stops waiting for it.
GRACEFUL_SHUTDOWN_S = 3


def gateway_command(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> list[str]:
    """The argv that runs the gateway as its own process (what `agentlog up` supervises)."""
    return [sys.executable, "-m", "agentlog", "gateway", "--host", host, "--port", str(port)]


keys_app = typer.Typer(help="The gateway's API keys (stored hashed under var/gateway/).", no_args_is_help=True)


@keys_app.command("create")
def create_key(
    user: Annotated[str, typer.Option(help="the user id the key acts as")],
    admin: Annotated[bool, typer.Option(help="may read the dead letters, metrics and topics")] = False,
) -> None:
    """Make a key and print it once: it is stored only as a hash."""
    from agentlog.config import Settings
    from agentlog.web.keys import KeyStore

    record, key = KeyStore.of(Settings.from_env()).create(user, admin=admin)
    typer.echo(f"created key {record.id} for {user}{' (admin)' if admin else ''}; it is shown only now:", err=True)
    typer.echo(key)


@keys_app.command("list")
def list_keys() -> None:
    """Every key's id, user, role, creation and last use (never the key)."""
    from agentlog.config import Settings
    from agentlog.web.keys import KeyStore

    for key in KeyStore.of(Settings.from_env()).list():
        state = f"revoked {key.revoked}" if key.revoked else "active"
        typer.echo(f"{key.id}  {key.user_id}  {'admin' if key.admin else 'user'}  created {key.created}  "
                   f"last used {key.last_used or 'never'}  {state}")


@keys_app.command("revoke")
def revoke_key(key_id: Annotated[str, typer.Argument(help="the key's id (from `agentlog keys list`)")]) -> None:
    """Revoke a key now: its requests and the sessions made with it get 401."""
    from agentlog.config import Settings
    from agentlog.web.keys import KeyStore

    if not KeyStore.of(Settings.from_env()).revoke(key_id):
        typer.echo(f"no active key {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {key_id}")


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")

    @app.command("gateway")
    def gateway(
        host: Annotated[str, typer.Option(help="address to listen on")] = DEFAULT_HOST,
        port: Annotated[int, typer.Option(help="port to listen on")] = DEFAULT_PORT,
    ) -> None:
        """Serve the HTTP API and the web page (chat, live timeline, dead letters) over the log."""
        import uvicorn

        from agentlog.config import Settings
        from agentlog.observability import setup_logging
        from agentlog.web.app import create_app

        setup_logging("gateway")
        uvicorn.run(create_app(Settings.from_env()), host=host, port=port, log_config=None,
                    timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
