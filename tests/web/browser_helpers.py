"""The browser tests' harness: Debian's Chromium, a seeded database, a real dashboard server,
console-error collection and the phone-width layout check.

Nothing here downloads a browser: Playwright drives the `chromium` that `make test` installs
from Debian (`ROADIE_TEST_CHROMIUM` may name another binary).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from roadie import App, Permanent
from roadie.worker import Worker
from tests.helpers import wait_until

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
SERVER_START_TIMEOUT = 30.0  # seconds; a loaded 2-core machine imports slowly


def chromium_path() -> str:
    """The Chromium to drive, or a skip (a failure under CI=true) saying why there is none."""
    candidates = [os.environ.get("ROADIE_TEST_CHROMIUM"), shutil.which("chromium")]
    candidates.append("/usr/bin/chromium")
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    _missing("Chromium not found (install Debian's `chromium`: `make test` does)")
    raise AssertionError("unreachable")


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; the browser tests are required in CI")
    pytest.skip(reason)


def require_playwright() -> None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("the playwright package is missing (pip install -e '.[dev]')")


# -- the seeded database ---------------------------------------------------------------------


@dataclass
class Seeded:
    """What the seed wrote: job ids by role, and how to stop the worker holding `running`."""

    parent: int  # complete, with two complete children
    children: list[int]
    waiting: int  # a parent whose children wait in the unserved "search" queue
    failed: list[int]  # failed with a traceback, one attempt each
    review: int  # failed for good (Permanent), awaiting review
    hostile: int  # pending, its args hold markup
    cancelled: int
    scheduled: int
    running: int  # held by a live worker on the "slow" queue until `stop()`
    _stop: list[Any] = field(default_factory=list, repr=False)

    def stop(self) -> None:
        for stop in reversed(self._stop):
            stop()
        self._stop.clear()


HOSTILE = "<script>window.__pwned = 1</script><img src=/x-hostile onerror=alert(1)>"


def seed(url: str) -> Seeded:
    """Jobs in every state across five queues, on a migrated, empty database."""
    app = App(url)
    release = threading.Event()

    @app.task(queue="content")
    def publish(ctx, video: int) -> dict[str, int]:
        for fmt in ("480p", "720p"):
            ctx.spawn(transcode, video=video, fmt=fmt)
        return {"video": video}

    @app.task(queue="content")
    def transcode(ctx, video: int, fmt: str) -> dict[str, Any]:
        ctx.progress(1.0, "encoded")
        return {"video": video, "fmt": fmt, "bytes": 1_048_576}

    @app.task(queue="content")
    def reindex(ctx, site: str) -> None:
        for doc in (1, 2):
            ctx.spawn(index, doc=f"{site}/{doc}")

    @app.task(queue="search")
    def index(ctx, doc: str) -> str:
        return doc

    @app.task(queue="email", max_attempts=1)
    def send_email(ctx, user: int) -> None:
        _deliver(user)

    @app.task(queue="email", max_attempts=1)
    def verify_address(ctx, address: str) -> None:
        raise Permanent(f"{address} does not exist")

    @app.task(queue="slow")
    def hold(ctx) -> str:
        ctx.progress(0.4, "waiting for the test to end")
        release.wait(120)
        return "released"

    parent = publish.enqueue(video=7)
    waiting = reindex.enqueue(site="blog")
    failed = [send_email.enqueue(user=13).id, send_email.enqueue(user=14).id]
    review = verify_address.enqueue(address="nobody@example.invalid")
    app.run_worker(queues=["content", "email"], burst=True, concurrency=2)

    hostile = index.enqueue(doc=HOSTILE)
    cancelled = index.enqueue(doc="gone")
    app.admin.cancel([cancelled.id], actor="seed")
    scheduled = index.options(delay="1h").enqueue(doc="later")
    running = hold.enqueue()

    worker = Worker(app.backend, app.tasks, ["slow"], concurrency=1, poll_interval=0.1)
    thread = threading.Thread(target=worker.run, name="seed-holder", daemon=True)
    thread.start()

    def stop() -> None:
        release.set()
        worker.stop()
        thread.join(15)
        app.close()

    seeded = Seeded(
        parent=parent.id,
        children=[c.id for c in app.get_job(parent.id).children or []],
        waiting=waiting.id,
        failed=failed,
        review=review.id,
        hostile=hostile.id,
        cancelled=cancelled.id,
        scheduled=scheduled.id,
        running=running.id,
        _stop=[stop],
    )
    try:
        states = {
            "parent": ("complete", parent.id),
            "waiting": ("waiting", waiting.id),
            "failed": ("failed", failed[0]),
            "running": ("running", running.id),
        }
        for what, (state, job_id) in states.items():
            wait_until(
                lambda s=state, j=job_id: app.get_job(j).state == s,
                what=f"the seeded {what} job to be {state}",
                detail=lambda j=job_id: app.get_job(j),
            )
        assert len(seeded.children) == 2
    except BaseException:
        seeded.stop()
        raise
    return seeded


def _deliver(user: int) -> None:
    """A call two frames deep, so the traceback has something to show."""
    raise ConnectionRefusedError(f"smtp relay refused the message for user {user}")


# -- the dashboard server --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """The server gets SIGTERM if pytest dies without tearing down (Linux)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Dashboard:
    """`roadie dashboard --port <free> --database-url <url> [extra_args]` as a subprocess
    (e.g. extra_args `--auth admin:pw --viewer-auth viewer:pw`)."""

    def __init__(self, database_url: str, log_path: Path, extra_args: Sequence[str] = ()) -> None:
        self.database_url = database_url
        self.log_path = log_path
        self.extra_args = list(extra_args)
        self.process: subprocess.Popen[bytes] | None = None
        self.base_url = ""

    def start(self) -> Dashboard:
        for _ in range(3):  # another process may take the free port first
            port = free_port()
            if self._start_on(port):
                return self
        raise AssertionError(f"the dashboard would not start:\n{self.log()}")

    def _start_on(self, port: int) -> bool:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("ROADIE_DASHBOARD_AUTH", "ROADIE_DASHBOARD_VIEWER_AUTH")
        }
        command = [
            sys.executable,
            "-c",
            "import sys; from roadie.cli import main; sys.exit(main())",
            "dashboard",
            "--port",
            str(port),
            "--database-url",
            self.database_url,
            *self.extra_args,
        ]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=_die_with_parent,
            )
        self.base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                if "address already in use" in self.log().lower():
                    return False
                raise AssertionError(
                    f"the dashboard exited with {self.process.returncode}:\n{self.log()}"
                )
            if self._healthz_answers():
                return True
            time.sleep(0.1)
        self.stop()
        raise AssertionError(
            f"the dashboard did not answer /healthz within {SERVER_START_TIMEOUT}s:\n{self.log()}"
        )

    def _healthz_answers(self) -> bool:
        """True once /healthz says 200; an error if it answers that the database is not ok."""
        try:
            with urllib.request.urlopen(f"{self.base_url}/healthz", timeout=2):
                return True
        except urllib.error.HTTPError as exc:
            raise AssertionError(
                f"/healthz answered {exc.code}: {exc.read().decode(errors='replace')}\n{self.log()}"
            ) from None
        except OSError:
            return False

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


# -- what the browser reports ----------------------------------------------------------------


class ConsoleWatch:
    """Console errors (CSP violations among them), uncaught page errors and failed loads."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: uncaught {exc}"))
        page.on("dialog", self._dialog)
        self.page = page

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(f"{self.page.url}: console error: {message.text}")

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.accept()


# A page overflows sideways at phone width unless its wide parts (tables) scroll inside a box
# of their own within <main>. Returns what sticks out, outermost first.
OVERFLOW_SCRIPT = """
() => {
  const width = document.documentElement.clientWidth;
  const main = document.querySelector("main");
  if (!main) return ["no <main>"];
  const found = [];
  const name = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
    (el.className && typeof el.className === "string" ? "." + el.className.trim().split(/\\s+/).join(".") : "");
  if (document.documentElement.scrollWidth > width + 1)
    found.push(`the page scrolls sideways: ${document.documentElement.scrollWidth}px wide in ${width}px`);
  if (main.scrollWidth > main.clientWidth + 1)
    found.push(`<main> overflows: ${main.scrollWidth}px of content in ${main.clientWidth}px`);
  const reported = [];
  for (const el of main.querySelectorAll("*")) {
    const box = el.getBoundingClientRect();
    const spills = getComputedStyle(el).overflowX === "visible" && el.scrollWidth > el.clientWidth + 1;
    const right = Math.max(box.right, spills ? box.left + el.scrollWidth : 0);
    if (box.width === 0 || right <= width + 1) continue;
    if (reported.some((r) => r.contains(el))) continue;
    let scrolls = false;
    for (let up = el.parentElement; up && up !== main; up = up.parentElement) {
      if (["auto", "scroll", "hidden", "clip"].includes(getComputedStyle(up).overflowX)) {
        scrolls = true;
        break;
      }
    }
    if (!scrolls) {
      reported.push(el);
      found.push(`${name(el)} ends at ${Math.round(right)}px, past ${width}px`);
    }
  }
  return found.slice(0, 10);
}
"""
