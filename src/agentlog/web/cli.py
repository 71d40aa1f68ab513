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


def register(app: typer.Typer) -> None:
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
