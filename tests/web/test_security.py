"""The dashboard's access rules over its whole route table, pages included (enumerated from the
Starlette app, so routes added later are covered), and `roadie dashboard` as a real process.

Credentials, roles, cross-site refusal, 405 on GET of an action, failed logins logged and slowed,
the CSP header, hostile arguments returned as data, DNS rebinding against an open dashboard.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from roadie import App
from roadie.cli import main
from roadie.web import auth
from roadie.web.auth import Guard
from tests.web.conftest import ADMIN, CREDENTIALS, VIEWER, basic

SAFE = ("GET", "HEAD", "OPTIONS")
OPEN = ("/healthz",)
HOSTILE = "<script>alert(1)</script>"


@pytest.fixture(autouse=True)
def _no_login_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    """Failed logins answer at once here; `test_failed_logins_are_logged_and_slowed` measures
    the delay the guard asks for instead of waiting for it."""
    monkeypatch.setattr(auth, "FAILED_LOGIN_DELAY", 0.0)


@pytest.fixture
def job(app: App) -> int:
    """A pending job whose args hold a script tag; the id every {job_id} route is asked about."""

    @app.task(queue="content")
    def hostile(ctx, name: str = "") -> None: ...

    return app.enqueue("hostile", {"name": HOSTILE}).id


def endpoints(web: Starlette, job_id: int) -> Iterator[tuple[str, str]]:
    """(method, concrete path) for every route of the dashboard: path parameters filled in
    (ids with `job_id`, a queue with "content"), a file for each static mount."""

    def fill(match: re.Match[str]) -> str:
        name, convertor = match.group(1), match.group(2)
        if convertor == "int" or name.endswith("id"):
            return str(job_id)
        return "content" if name == "queue" else "x"

    for route in web.routes:
        if isinstance(route, Mount):
            directory = getattr(route.app, "directory", None)
            files = sorted(p.name for p in Path(directory).iterdir()) if directory else []
            yield "GET", f"{route.path}/{files[0] if files else 'missing.css'}"
        elif isinstance(route, Route):
            path = re.sub(r"\{(\w+)(?::(\w+))?\}", fill, route.path)
            for method in sorted(route.methods or ()):
                if method != "HEAD":
                    yield method, path
        else:
            raise AssertionError(f"a route of a kind this test does not know: {route!r}")


def send(client: TestClient, method: str, path: str, **headers: str) -> httpx.Response:
    """A request as the dashboard's own pages or a script would make it: JSON for the API,
    a form (without a token) for pages."""
    if method in SAFE:
        return client.request(method, path, headers=headers)
    if path.startswith("/api/"):
        return client.request(method, path, json={}, headers=headers)
    return client.request(method, path, data={"note": "x"}, headers=headers)


def test_the_route_table_is_enumerated(secured_web: Starlette, job: int) -> None:
    table = set(endpoints(secured_web, job))
    assert ("GET", "/healthz") in table and ("GET", f"/api/jobs/{job}") in table
    assert ("POST", "/api/jobs/retry") in table and ("GET", "/metrics") in table
    assert any(method == "GET" and path.startswith("/static/") for method, path in table)


def test_every_route_but_healthz_needs_credentials(
    secured_web: Starlette, make_client: Callable[..., TestClient], job: int
) -> None:
    strangers = {
        "none": make_client(secured_web),
        "wrong password": make_client(secured_web, user=(ADMIN[0], "guess")),
        "unknown user": make_client(secured_web, user=("mallory", ADMIN[1])),
        "not basic": make_client(secured_web),
    }
    for method, path in endpoints(secured_web, job):
        for who, client in strangers.items():
            extra = {"authorization": "Bearer x"} if who == "not basic" else {}
            response = send(client, method, path, **extra)
            if path in OPEN:
                assert response.status_code == 200, (who, method, path)
            else:
                assert response.status_code == 401, (who, method, path, response.text)
                assert response.headers["www-authenticate"].startswith("Basic"), path
                assert HOSTILE not in response.text
    assert make_client(secured_web, user=ADMIN).get("/api/jobs").status_code == 200
    assert make_client(secured_web, user=VIEWER).get("/api/jobs").status_code == 200


def test_viewers_see_everything_and_change_nothing(
    app: App, secured_web: Starlette, make_client: Callable[..., TestClient], job: int
) -> None:
    viewer = make_client(secured_web, user=VIEWER)
    posts = 0
    for method, path in endpoints(secured_web, job):
        response = send(viewer, method, path)
        if method in SAFE:
            assert response.status_code < 400, (method, path, response.status_code)
            if path.startswith("/api/") or path == "/metrics":
                assert response.status_code == 200, path
        else:
            posts += 1
            assert response.status_code == 403, (method, path, response.text)
    assert posts >= 12
    assert app.admin.audit() == []
    listed = app.admin.list_jobs()
    assert [(j.id, j.state) for j in listed] == [(job, "pending")]
    assert app.admin.queues()[0]["paused"] is False


def test_read_only_makes_the_admin_a_viewer(
    web_app: Callable[..., Starlette], make_client: Callable[..., TestClient], job: int, app: App
) -> None:
    web = web_app(**CREDENTIALS, read_only=True)
    admin = make_client(web, user=ADMIN)
    assert admin.get(f"/api/jobs/{job}").status_code == 200
    for method, path in endpoints(web, job):
        if method not in SAFE:
            assert send(admin, method, path).status_code == 403, path
    open_read_only = make_client(read_only=True)
    assert open_read_only.post("/api/jobs/cancel", json={"ids": [job]}).status_code == 403
    assert app.admin.get_job(job).state == "pending"


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "https://evil.example"},
        {"origin": "http://localhost.evil.example"},
        {"origin": "null"},
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
        {"sec-fetch-site": "cross-site", "origin": "http://localhost"},
    ],
)
def test_an_admins_post_from_another_site_is_refused(
    app: App,
    secured_web: Starlette,
    make_client: Callable[..., TestClient],
    job: int,
    headers: dict[str, str],
) -> None:
    admin = make_client(secured_web, user=ADMIN)
    for method, path in endpoints(secured_web, job):
        if method not in SAFE:
            response = send(admin, method, path, **headers)
            assert response.status_code == 403, (path, headers, response.text)
            assert "cross-site" in response.text
    assert app.admin.get_job(job).state == "pending" and app.admin.audit() == []


def test_an_admins_post_from_the_dashboard_itself_is_taken(
    app: App, admin_client: TestClient, job: int
) -> None:
    for headers in ({"origin": "http://localhost"}, {"sec-fetch-site": "same-origin"}, {}):
        response = admin_client.post("/api/jobs/cancel", json={"ids": [job]}, headers=headers)
        assert response.status_code == 200, (headers, response.text)
    assert app.admin.get_job(job).state == "cancelled"


def test_get_on_an_action_is_405(
    admin_client: TestClient, secured_web: Starlette, job: int, app: App
) -> None:
    table = list(endpoints(secured_web, job))
    readable = {path for method, path in table if method == "GET"}
    actions = {path for method, path in table if method == "POST"} - readable
    assert len(actions) >= 12
    for path in actions:
        response = admin_client.get(path)
        assert response.status_code == 405, (path, response.status_code)
        assert "POST" in response.headers["allow"]
    assert app.admin.get_job(job).state == "pending" and app.admin.audit() == []


def test_failed_logins_are_logged_and_slowed(
    secured_web: Starlette,
    make_client: Callable[..., TestClient],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    guard: Guard = secured_web.state.guard
    asked: list[tuple[str, float]] = []
    real_delay = guard.login_delay

    def recorded(client: str) -> float:
        delay = real_delay(client)
        asked.append((client, delay))
        return 0.0  # asked for, recorded, not waited for

    monkeypatch.setattr(auth, "FAILED_LOGIN_DELAY", 0.25)
    monkeypatch.setattr(guard, "login_delay", recorded)
    stranger = make_client(secured_web, user=(ADMIN[0], "guess"))
    with caplog.at_level(logging.WARNING, logger="roadie.web"):
        for _ in range(6):
            assert stranger.get("/api/jobs%0aFORGED LINE").status_code == 401
    delays = [delay for _, delay in asked]
    assert delays == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0]  # doubling, capped
    assert {client for client, _ in asked} == {"testclient"}
    lines = [r.getMessage() for r in caplog.records if "failed dashboard login" in r.getMessage()]
    assert len(lines) == 6 and all("testclient" in line for line in lines)
    assert all("\n" not in line for line in lines)  # a path cannot forge a log line

    # No credentials at all is not a failed login: 401, neither logged nor slowed.
    caplog.clear()
    assert make_client(secured_web).get("/api/jobs").status_code == 401
    assert len(asked) == 6 and not caplog.records
    # The right ones still work, at once.
    assert make_client(secured_web, user=ADMIN).get("/api/jobs").status_code == 200


def test_the_guard_slows_each_address_on_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "FAILED_LOGIN_DELAY", 0.25)
    guard = Guard(admin=("a", "b"))
    first = [guard.login_delay("10.0.0.1") for _ in range(3)]
    assert first == sorted(first) and first[0] < first[1] < first[2]
    assert guard.login_delay("10.0.0.2") == first[0]  # another address starts afresh
    assert max(guard.login_delay("10.0.0.1") for _ in range(20)) == auth.FAILED_LOGIN_MAX_DELAY


def test_every_response_carries_the_csp_without_inline_scripts(
    secured_web: Starlette, make_client: Callable[..., TestClient], job: int
) -> None:
    clients = [
        make_client(secured_web),
        make_client(secured_web, user=VIEWER),
        make_client(secured_web, user=ADMIN),
    ]
    seen = set()
    for method, path in [*endpoints(secured_web, job), ("GET", "/no/such/page")]:
        for client in clients:
            response = send(client, method, path)
            seen.add(response.status_code)
            csp = response.headers.get("content-security-policy", "")
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
            assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, path
            assert response.headers["x-content-type-options"] == "nosniff"
    assert {200, 401, 403, 404} <= seen


def test_hostile_args_come_back_as_json_data(admin_client: TestClient, job: int) -> None:
    response = admin_client.get(f"/api/jobs/{job}")
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.json()["args"] == {"name": HOSTILE}
    listed = admin_client.get("/api/jobs").json()
    assert listed[0]["args"]["name"] == HOSTILE


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "192.168.1.20:8000"])
def test_an_open_dashboard_answers_only_for_localhost(
    client: TestClient, job: int, host: str
) -> None:
    """DNS rebinding: a page of evil.example whose name now resolves to 127.0.0.1 is, to the
    browser, same-origin with it; its requests carry Host: evil.example."""
    web: Starlette = client.app  # type: ignore[assignment]
    for method, path in endpoints(web, job):
        response = send(client, method, path, host=host, origin=f"http://{host}")
        if path in OPEN:
            assert response.status_code == 200
        else:
            assert response.status_code == 403, (method, path)
            assert "localhost" in response.text and HOSTILE not in response.text


@pytest.mark.parametrize("host", ["localhost:8000", "127.0.0.1:8000", "[::1]:8000", "localhost"])
def test_an_open_dashboard_answers_loopback_names(client: TestClient, host: str) -> None:
    assert client.get("/api/jobs", headers={"host": host}).status_code == 200


# -- roadie dashboard --------------------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "dashboard.example"])
def test_dashboard_refuses_a_public_address_without_credentials(
    capsys: pytest.CaptureFixture[str], db_url: str, host: str
) -> None:
    code, out, err = run_cli(capsys, "dashboard", "--host", host, "--database-url", db_url)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("roadie: error: refusing to serve")
    assert "--auth" in err


def test_dashboard_says_in_one_line_what_stops_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_url: str
) -> None:
    code, _, err = run_cli(capsys, "dashboard", "--auth", "nocolon", "--database-url", db_url)
    assert code == 2 and err == "roadie: error: bad --auth: use user:password, both non-empty\n"
    code, _, err = run_cli(
        capsys, "dashboard", "--database-url", f"sqlite:///{tmp_path}/no/such/dir/x.db"
    )
    assert code == 1 and err.count("\n") == 1 and "cannot open SQLite database" in err
    code, _, err = run_cli(capsys, "dashboard", "--database-url", f"sqlite:///{tmp_path}/empty.db")
    assert code == 1 and err.count("\n") == 1 and "roadie migrate" in err


def _lines(stream: Any, into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line)


def test_dashboard_serves_until_sigterm(db_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROADIE_")}
    env["ROADIE_DASHBOARD_AUTH"] = "ops:s3cret"  # from the environment, not the command line
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from roadie.cli import main; sys.exit(main())",
            "dashboard",
            "--port",
            "0",
            "--database-url",
            db_url,
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_lines, args=(process.stderr, lines), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 20
        url = None
        while url is None:
            remaining = deadline - time.monotonic()
            assert remaining > 0 and process.poll() is None, "the dashboard did not start"
            try:
                line = lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            found = re.search(r"serving (http://127\.0\.0\.1:\d+/)", line)
            url = found.group(1) if found else None
        assert "admin ops" in line and "s3cret" not in line
        health = httpx.get(url + "healthz", timeout=5)
        assert health.status_code == 200 and health.json()["database"] == "ok"
        assert health.headers["content-security-policy"].startswith("default-src 'self'")
        assert "server" not in health.headers
        assert httpx.get(url + "api/jobs", timeout=5).status_code == 401
        jobs = httpx.get(url + "api/jobs", headers={"authorization": basic("ops", "s3cret")})
        assert jobs.status_code == 200 and jobs.json() == []
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(timeout=5)
    rest = "".join(lines.get_nowait() for _ in range(lines.qsize()))
    assert "Traceback" not in rest and "error" not in rest.lower(), rest
