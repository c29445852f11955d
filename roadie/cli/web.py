"""roadie dashboard: the web UI, the JSON API, /metrics and /healthz, served by uvicorn."""

from __future__ import annotations

import ipaddress
import signal
import socket
from typing import Any

import click

from roadie.cli.common import app_options, load_app
from roadie.errors import InvalidInput, RoadieError

LOOPBACK_NAMES = ("localhost",)
SHUTDOWN_GRACE = 5  # seconds open connections get to finish once told to stop


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the dashboard on this machine."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@click.command("dashboard")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option(
    "--auth",
    envvar="ROADIE_DASHBOARD_AUTH",
    default=None,
    metavar="USER:PASSWORD",
    help="The admin's HTTP Basic credentials (or ROADIE_DASHBOARD_AUTH).",
)
@click.option(
    "--viewer-auth",
    envvar="ROADIE_DASHBOARD_VIEWER_AUTH",
    default=None,
    metavar="USER:PASSWORD",
    help="A viewer's credentials: sees, cannot act (or ROADIE_DASHBOARD_VIEWER_AUTH).",
)
@click.option("--read-only", is_flag=True, help="Everyone is a viewer: no action is allowed.")
@app_options
def dashboard_command(
    host: str,
    port: int,
    auth: str | None,
    viewer_auth: str | None,
    read_only: bool,
    app_spec: str | None,
    database_url: str | None,
) -> int:
    """Serve the web dashboard, its JSON API (/api/), /metrics and /healthz.

    Binds 127.0.0.1 by default; any other address needs --auth or --viewer-auth. Runs until
    SIGINT or SIGTERM."""
    import uvicorn  # the web stack loads only for this verb

    from roadie.web import create_app

    with load_app(app_spec, database_url) as app:
        web = create_app(app, auth=auth, viewer_auth=viewer_auth, read_only=read_only)
        guard = web.state.guard
        if guard.open and not is_loopback(host):
            raise InvalidInput(
                f"refusing to serve {host} without credentials: give --auth USER:PASSWORD "
                "(or --viewer-auth), or bind 127.0.0.1"
            )
        app.admin.queues()  # an unreachable or unmigrated database: say so now, exit 1
        sock = _listen(host, port)
        config = uvicorn.Config(
            web,
            log_level="warning",
            access_log=False,
            workers=1,
            lifespan="off",
            timeout_graceful_shutdown=SHUTDOWN_GRACE,
            server_header=False,
        )
        server = uvicorn.Server(config)
        bound = sock.getsockname()
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        who = "anyone on this machine" if guard.open else _roles(guard)
        click.echo(
            f"roadie dashboard: serving http://{shown}:{bound[1]}/ ({who}; "
            f"{'read-only' if read_only else 'admins act'}); Ctrl-C stops",
            err=True,
        )
        # uvicorn re-raises the signal that stopped it once it is done: these handlers take it,
        # so SIGTERM and SIGINT end the command with exit 0 rather than a kill or a traceback.
        previous = {
            signum: signal.signal(signum, _ignore) for signum in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            server.run(sockets=[sock])
        finally:
            sock.close()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    if not server.started:
        raise RoadieError(f"the dashboard could not start on {host}:{port}")
    return 0


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host.strip("[]"), port), family=family)
    except OSError as exc:
        raise RoadieError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _roles(guard: Any) -> str:
    users = []
    if guard.admin:
        users.append(f"admin {guard.admin[0]}")
    if guard.viewer:
        users.append(f"viewer {guard.viewer[0]}")
    return ", ".join(users)


def _ignore(signum: int, frame: Any) -> None:
    pass
