"""roadie stats, roadie metrics."""

from __future__ import annotations

import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import click
from prometheus_client import make_wsgi_app
from rich.table import Table

from roadie.cli.common import app_options, console, load_app, print_json, when
from roadie.errors import RoadieError
from roadie.metrics import DEFAULT_WINDOW, make_registry
from roadie.report import round_span, span

DEPTH_COLUMNS = ("pending", "running", "waiting", "failed")
SCRAPE_TIMEOUT = 10.0  # a client that sends nothing for this long is dropped


@click.command("stats")
@click.option("--queue", default=None, metavar="Q", help="Only this queue.")
@click.option(
    "--window",
    default="15m",
    show_default=True,
    metavar="DURATION",
    help="How far back throughput, durations, failure rate and retries look.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@app_options
def stats_command(
    queue: str | None, window: str, as_json: bool, app_spec: str | None, database_url: str | None
) -> int:
    """Queue depth, throughput, durations, failure rate, retries, lock and pending ages."""
    with load_app(app_spec, database_url) as app:
        stats = app.admin.stats(queue=queue, window=window)
    if as_json:
        print_json(stats)
    else:
        console().print(stats_table(stats))
    return 0


def stats_table(stats: dict[str, Any]) -> Table:
    """One row per queue and a total row; depth now, the rest over the window."""
    workers = ", ".join(f"{n} {state}" for state, n in stats["workers"].items())
    at = when(datetime.fromisoformat(stats["at"]).astimezone(UTC))
    window = round_span(stats["window"])
    table = Table(
        title=f"roadie stats at {at}; all but depth and ages over the last {window}",
        caption=f"workers: {workers}",
        show_footer=False,
    )
    table.add_column("queue")
    for state in DEPTH_COLUMNS:
        table.add_column(state, justify="right")
    for name in ("done/s", "p50", "p95", "p99", "fail %", "retries", "lock age", "pending age"):
        table.add_column(name, justify="right")
    table.add_column("review", justify="right")
    table.add_column("stuck", justify="right")
    for name, entry in stats["queues"].items():
        table.add_row(*_row(name, entry))
    table.add_section()
    table.add_row(*_row("total", stats["total"]))
    return table


def _row(name: str, entry: dict[str, Any]) -> list[str]:
    duration = entry["duration"]
    rate = entry["failure_rate"]
    return [
        name,
        *(str(entry["depth"][state]) for state in DEPTH_COLUMNS),
        _rate(entry["throughput"]),
        *(span(duration[key]) for key in ("p50", "p95", "p99")),
        "-" if rate is None else f"{rate * 100:.1f}",
        str(entry["retries"]),
        span(entry["oldest_lock_age"]),
        span(entry["oldest_pending_age"]),
        str(entry["review"]),
        str(entry["stuck"]),
    ]


def _rate(per_second: float) -> str:
    return f"{per_second:.3g}" if per_second < 1000 else f"{per_second:.0f}"


@click.command("metrics")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=9100, show_default=True)
@click.option(
    "--window",
    default=DEFAULT_WINDOW,
    show_default=True,
    metavar="DURATION",
    help="How far back the duration summary and failure ratio look.",
)
@app_options
def metrics_command(
    host: str, port: int, window: str, app_spec: str | None, database_url: str | None
) -> int:
    """Serve the Prometheus /metrics endpoint alone (figures read from the database per scrape)."""
    with load_app(app_spec, database_url) as app:
        app.admin.stats(window=window)  # a bad window or an unreachable database: say so now
        wsgi = metrics_app(make_registry(app.admin, window))
        try:
            server_class = _Server6 if ":" in host else _Server
            server = make_server(host, port, wsgi, server_class, _QuietHandler)
        except OSError as exc:
            raise RoadieError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None

        def stop(signum: int, frame: Any) -> None:
            # shutdown() waits for serve_forever() to return: call it from another thread.
            threading.Thread(target=server.shutdown, daemon=True).start()

        previous = {
            signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)
        }
        click.echo(f"serving http://{host}:{server.server_port}/metrics", err=True)
        try:
            # Scrapes are answered one after another on this thread: one database connection.
            server.serve_forever()
        finally:
            server.server_close()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    return 0


def metrics_app(registry: Any) -> Callable[..., Iterable[bytes]]:
    """A WSGI app: `/metrics` renders the registry; a database error answers 503 in one line."""
    prometheus = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"roadie metrics: see /metrics\n"]
        try:
            return prometheus(environ, start_response)
        except RoadieError as exc:
            print(f"roadie: scrape failed: {exc}", file=sys.stderr)
            start_response(
                "503 Service Unavailable", [("Content-Type", "text/plain; charset=utf-8")]
            )
            return [f"# roadie: {exc}\n".encode()]

    return app


class _QuietHandler(WSGIRequestHandler):
    """No access log line per scrape; a silent client is dropped after SCRAPE_TIMEOUT."""

    timeout = SCRAPE_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(WSGIServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        print(
            f"roadie: metrics request from {client_address[0]} failed: {error!r}", file=sys.stderr
        )


class _Server6(_Server):
    address_family = socket.AF_INET6
