"""The dashboard's JSON API, /metrics and /healthz on both backends, with a frozen clock.

Every answer of a documented route is checked against the schema the OpenAPI document gives for
it (`check`), so the document cannot drift from what the API sends.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate as validate_spec
from prometheus_client.parser import text_string_to_metric_families
from starlette.routing import Route
from starlette.testclient import TestClient

from roadie import App, FrozenClock, Permanent
from roadie.backends.base import WorkerInfo
from roadie.jobs import Job
from roadie.web import api
from tests.web.conftest import ADMIN

DOC = api.openapi_document()
JSON = "application/json"


@pytest.fixture
def app(frozen_app: App) -> App:
    """The dashboard's App (see tests/web/conftest.py): a frozen clock and a few tasks."""

    @frozen_app.task(queue="content")
    def transcode(ctx, n: int = 0) -> int:
        return n

    @frozen_app.task(queue="notifications", max_attempts=3)
    def send(ctx, to: str = "") -> None:
        raise Permanent(f"mailbox {to} unreachable")

    @frozen_app.task(queue="content")
    def publish(ctx, n: int = 0) -> None:
        ctx.spawn("index", n=n)
        ctx.spawn("index", n=n + 1)

    @frozen_app.task(queue="indexing")
    def index(ctx, n: int = 0) -> None: ...

    return frozen_app


def check(response: httpx.Response, method: str, path: str, status: int = 200) -> Any:
    """Assert the status, and that the body is what the OpenAPI document says `method path`
    answers with it; the decoded body."""
    assert response.status_code == status, response.text
    operation = DOC["paths"][path][method.lower()]
    assert str(status) in operation["responses"], f"{status} is not documented for {path}"
    content = {
        media.partition(";")[0]: spec
        for media, spec in operation["responses"][str(status)]["content"].items()
    }
    media_type = response.headers["content-type"].partition(";")[0]
    assert media_type in content, f"{media_type} is not documented for {method} {path} {status}"
    if media_type != JSON:
        return response.text
    body = response.json()
    schema = {**content[JSON]["schema"], "components": DOC["components"]}
    OAS31Validator(schema).validate(body)
    return body


def error(response: httpx.Response, status: int) -> str:
    """The one-line error of a refused API call."""
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and "\n" not in body["error"], body
    return str(body["error"])


def fail(app: App, **args: Any) -> Job:
    """A `send` job that failed for good (awaiting review)."""
    job = app.tasks["send"].enqueue(**args)
    app.run_worker(queues=["notifications"], burst=True)
    failed = app.get_job(job.id)
    assert failed is not None and failed.state == "failed"
    return failed


def claim(app: App, worker: str, queue: str = "content") -> Job:
    [job] = app.backend.job_claim(worker, queue, 1, 30.0)
    return job


def heartbeat(app: App, worker: str) -> None:
    app.backend.worker_heartbeat(WorkerInfo(worker, "host-a", 4242, ["content"], 2))


def ids(items: list[dict[str, Any]]) -> list[int]:
    return [item["id"] for item in items]


def state_of(app: App, job_id: int) -> str:
    job = app.get_job(job_id)
    assert job is not None
    return job.state


# -- the document ------------------------------------------------------------------------------


def test_openapi_document_is_valid_and_matches_the_routes(client: TestClient) -> None:
    served = check(client.get("/api/openapi.json"), "GET", "/api/openapi.json")
    validate_spec(served)  # raises on any structural error (OpenAPI 3.1)
    assert served["openapi"].startswith("3.1")
    routed = set()
    for route in api.routes():
        assert isinstance(route, Route)
        for method in route.methods or ():
            if method != "HEAD":
                routed.add((api.openapi_path(route.path), method.lower()))
    documented = {(path, method) for path, item in served["paths"].items() for method in item}
    assert routed == documented
    # Every route the whole dashboard serves under /api/, /metrics and /healthz is documented.
    web_paths = {
        api.openapi_path(route.path)
        for route in client.app.routes  # type: ignore[attr-defined]
        if isinstance(route, Route)
        and (route.path.startswith("/api/") or route.path in ("/metrics", "/healthz"))
    }
    assert web_paths == set(served["paths"])
    assert served["components"]["securitySchemes"]["basicAuth"]["scheme"] == "basic"
    assert served["paths"]["/healthz"]["get"]["security"] == []
    for path, item in served["paths"].items():
        for method, operation in item.items():
            if method == "post":
                assert {"400", "401", "403", "415"} <= set(operation["responses"]), path
            if "{job_id}" in path:
                assert "404" in operation["responses"], path


def test_a_schema_that_does_not_match_is_caught(client: TestClient) -> None:
    """The response check can fail: a job missing its id does not pass as a Job."""
    schema = {**DOC["components"]["schemas"]["Job"], "components": DOC["components"]}
    assert not OAS31Validator(schema).is_valid({"queue": "content"})


# -- reading -----------------------------------------------------------------------------------


def test_list_jobs_with_every_filter_and_paging(
    app: App, client: TestClient, clock: FrozenClock
) -> None:
    early = app.tasks["transcode"].enqueue(n=1)
    clock.advance(3600)
    parent = app.tasks["publish"].enqueue(n=10)
    app.run_worker(queues=["content"], burst=True)
    bounced = fail(app, to="bob")
    children = app.admin.get_job(parent.id).children or []
    assert len(children) == 2

    def listed(query: str = "") -> list[int]:
        return ids(check(client.get(f"/api/jobs{query}"), "GET", "/api/jobs"))

    every = listed()
    assert every == sorted(every, reverse=True) and len(every) == 5
    assert listed("?state=failed") == [bounced.id]
    assert listed("?queue=indexing") == sorted([c.id for c in children], reverse=True)
    assert listed("?task=transcode") == [early.id]
    assert listed(f"?parent={parent.id}") == sorted([c.id for c in children], reverse=True)
    assert listed("?error=BOB") == [bounced.id]
    assert listed("?review=true") == [bounced.id]
    assert bounced.id not in listed("?review=false")
    assert listed("?until=30m") == [early.id]
    assert early.id not in listed("?since=30m")
    assert listed("?state=failed&queue=notifications&since=1h") == [bounced.id]
    assert listed("?state=&queue=") == every  # an empty field of a form means any
    first = listed("?limit=2")
    assert first == every[:2]
    assert listed(f"?limit=2&before={first[-1]}") == every[2:4]


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("state=done", "bad state 'done'"),
        ("limit=0", "bad limit 0"),
        ("limit=ten", "bad limit 'ten'"),
        ("limit=20000", "bad limit 20000"),
        ("parent=x", "bad parent 'x'"),
        ("review=maybe", "bad review 'maybe'"),
        ("since=yesterday", "since"),
        ("queue=Bad%20Queue", "invalid queue name"),
        ("stat=failed", "unknown query parameter 'stat'"),
        ("state=failed&state=complete", "more than once"),
    ],
)
def test_list_jobs_refuses_bad_filters(client: TestClient, query: str, says: str) -> None:
    assert says in error(client.get(f"/api/jobs?{query}"), 400)


def test_show_job_with_attempts_children_and_timing(app: App, client: TestClient) -> None:
    parent = app.tasks["publish"].enqueue(n=3)
    app.run_worker(queues=["content"], burst=True)
    shown = check(client.get(f"/api/jobs/{parent.id}"), "GET", "/api/jobs/{job_id}")
    assert shown["id"] == parent.id and shown["task"] == "publish"
    assert [child["task"] for child in shown["children"]] == ["index", "index"]
    assert shown["attempts"][0]["outcome"] == "complete"
    assert set(shown["timing"]) == {"waited", "run_time", "lock_age"}
    assert shown["timing"]["run_time"] is not None and shown["timing"]["lock_age"] is None

    running = app.tasks["transcode"].enqueue(n=1)
    claim(app, "w-1")
    shown = check(client.get(f"/api/jobs/{running.id}"), "GET", "/api/jobs/{job_id}")
    assert shown["state"] == "running" and shown["locked_by"] == "w-1"
    assert shown["timing"]["lock_age"] == 0.0


def test_unknown_job_ids_are_404(client: TestClient) -> None:
    assert error(client.get("/api/jobs/123"), 404) == "no job 123"
    check(client.get("/api/jobs/123"), "GET", "/api/jobs/{job_id}", 404)
    assert error(client.get("/api/jobs/99999999999999999999999"), 404).startswith("no job")
    assert error(client.get("/api/jobs/abc"), 404) == "Not Found"
    assert error(client.post("/api/jobs/123/retry", json={}), 404) == "no job 123"
    assert error(client.post("/api/jobs/123/cancel", json={}), 404) == "no job 123"
    assert error(client.get("/api/nothing-here"), 404) == "Not Found"


def test_queues_workers_and_locks(app: App, client: TestClient, clock: FrozenClock) -> None:
    app.tasks["transcode"].enqueue_many([{"n": 1}, {"n": 2}, {"n": 3}])
    heartbeat(app, "w-alive")
    heartbeat(app, "w-stopped")
    held = claim(app, "w-alive")
    orphan = claim(app, "w-unregistered")
    stopping = claim(app, "w-stopped")
    app.backend.worker_stop("w-stopped")

    queues = check(client.get("/api/queues"), "GET", "/api/queues")
    content = next(q for q in queues if q["queue"] == "content")
    assert content["depth"]["running"] == 3 and content["paused"] is False
    assert {q["queue"] for q in queues} >= {"content", "notifications", "indexing"}

    workers = check(client.get("/api/workers"), "GET", "/api/workers")
    assert {w["id"]: w["state"] for w in workers} == {"w-alive": "alive", "w-stopped": "stopped"}

    locks = check(client.get("/api/locks"), "GET", "/api/locks")
    by_job = {lock["job_id"]: lock for lock in locks}
    assert set(by_job) == {held.id, orphan.id, stopping.id}
    assert by_job[held.id]["holder"] == "alive" and by_job[held.id]["worker"] == "w-alive"
    assert by_job[orphan.id]["holder"] == "unknown"
    assert by_job[stopping.id]["holder"] == "stopped"
    assert by_job[held.id]["expires_in"] == 30.0 and by_job[held.id]["lock_age"] == 0.0

    clock.advance(90)
    locks = check(client.get("/api/locks?dead_after=60s"), "GET", "/api/locks")
    lock = next(lock for lock in locks if lock["job_id"] == held.id)
    assert lock["holder"] == "dead" and lock["lock_age"] == 90.0
    assert lock["expires_in"] == -60.0 and lock["stuck"] == "lease expired"
    alive = check(client.get("/api/locks?dead_after=2m"), "GET", "/api/locks")
    assert next(x for x in alive if x["job_id"] == held.id)["holder"] == "alive"
    workers = check(client.get("/api/workers?dead_after=2m"), "GET", "/api/workers")
    assert {w["id"]: w["state"] for w in workers}["w-alive"] == "alive"
    assert "dead_after" in error(client.get("/api/workers?dead_after=soon"), 400)


def test_stats_and_failures(app: App, client: TestClient) -> None:
    app.tasks["transcode"].enqueue(n=1)
    app.run_worker(queues=["content"], burst=True)
    fail(app, to="mail-7")
    fail(app, to="mail-9")  # one signature: numbers are masked
    stats = check(client.get("/api/stats?window=1h"), "GET", "/api/stats")
    assert stats["window"] == 3600.0
    assert stats["queues"]["notifications"]["failed"] == 2
    assert stats["queues"]["content"]["depth"]["complete"] == 1
    assert stats["total"]["finished"] == 3
    one = check(client.get("/api/stats?queue=content"), "GET", "/api/stats")
    assert list(one["queues"]) == ["content"] and one["window"] == 900.0
    assert "window" in error(client.get("/api/stats?window=0s"), 400)

    groups = check(client.get("/api/failures"), "GET", "/api/failures")
    assert len(groups) == 1
    assert groups[0]["task"] == "send" and groups[0]["attempts"] == 2
    assert groups[0]["failed_jobs"] == 2
    assert check(client.get("/api/failures?task=transcode"), "GET", "/api/failures") == []
    assert check(client.get("/api/failures?queue=content"), "GET", "/api/failures") == []


def test_metrics_parse_as_prometheus_text(app: App, client: TestClient) -> None:
    app.tasks["transcode"].enqueue_many([{"n": 1}, {"n": 2}])
    fail(app, to="bob")
    response = client.get("/metrics")
    check(response, "GET", "/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    assert {"roadie_queue_depth", "roadie_workers", "roadie_jobs_finished"} <= set(families)
    depth = {
        (s.labels["queue"], s.labels["state"]): s.value
        for s in families["roadie_queue_depth"].samples
    }
    assert depth[("content", "pending")] == 2.0
    assert depth[("notifications", "failed")] == 1.0


def test_healthz_tells_database_and_workers_only(app: App, client: TestClient) -> None:
    app.tasks["transcode"].enqueue(n=1)
    heartbeat(app, "w-1")
    heartbeat(app, "w-2")
    app.backend.worker_stop("w-2")
    body = check(client.get("/healthz"), "GET", "/healthz")
    assert body == {"database": "ok", "workers_alive": 1}


# -- acting ------------------------------------------------------------------------------------


def test_retry_one_job_with_edited_args_is_audited_under_the_user(
    app: App, admin_client: TestClient
) -> None:
    job = fail(app, to="bob")
    path = "/api/jobs/{job_id}/retry"
    dry = check(
        admin_client.post(f"/api/jobs/{job.id}/retry", json={"args": {"to": "x"}, "dry_run": True}),
        "POST",
        path,
    )
    assert dry == {
        "action": "retry",
        "dry_run": True,
        "count": 1,
        "jobs": [
            {"id": job.id, "queue": "notifications", "task": "send", "attempt": 1, "worker": None}
        ],
        "skipped": [],
    }
    unchanged = app.get_job(job.id)
    assert unchanged is not None and unchanged.state == "failed" and unchanged.args == {"to": "bob"}
    assert app.admin.audit() == []  # dry runs are not audited

    done = check(
        admin_client.post(f"/api/jobs/{job.id}/retry", json={"args": {"to": "carol"}}), "POST", path
    )
    assert done["count"] == 1 and done["dry_run"] is False
    retried = app.get_job(job.id)
    assert retried is not None and retried.state == "pending"
    assert retried.args == {"to": "carol"}
    assert [record["args"] for record in retried.args_history] == [{"to": "bob"}]
    shown = check(admin_client.get(f"/api/jobs/{job.id}"), "GET", "/api/jobs/{job_id}")
    assert shown["args_history"][0]["args"] == {"to": "bob"}

    [entry] = check(admin_client.get("/api/audit"), "GET", "/api/audit")
    assert entry["actor"] == ADMIN[0] and entry["action"] == "jobs.retry"
    assert entry["job_ids"] == [job.id] and entry["params"]["args"] == {"to": "carol"}

    # Not failed any more: left alone, and said so.
    again = check(admin_client.post(f"/api/jobs/{job.id}/retry", json={}), "POST", path)
    assert again["count"] == 0 and again["skipped"] == [job.id]
    assert "arguments" in error(
        admin_client.post(f"/api/jobs/{job.id}/retry", json={"args": {"x": "y" * 300_000}}), 400
    )


def test_cancel_one_and_many_with_dry_runs(app: App, client: TestClient) -> None:
    jobs = app.tasks["transcode"].enqueue_many([{"n": i} for i in range(4)])
    done = fail(app, to="bob")
    one = jobs[0].id
    dry = check(client.post(f"/api/jobs/{one}/cancel", json={"dry_run": True}), "POST",
                "/api/jobs/{job_id}/cancel")  # fmt: skip
    assert dry["count"] == 1 and dry["dry_run"] is True
    assert state_of(app, one) == "pending"
    cancelled = check(client.post(f"/api/jobs/{one}/cancel", json={}), "POST",
                      "/api/jobs/{job_id}/cancel")  # fmt: skip
    assert cancelled["count"] == 1 and ids(cancelled["jobs"]) == [one]
    assert state_of(app, one) == "cancelled"

    many = [jobs[1].id, jobs[2].id, done.id, jobs[1].id]
    dry = check(client.post("/api/jobs/cancel", json={"ids": many, "dry_run": True}), "POST",
                "/api/jobs/cancel")  # fmt: skip
    assert (dry["count"], dry["skipped"]) == (2, [done.id])
    assert {state_of(app, j) for j in many} == {"pending", "failed"}
    report = check(client.post("/api/jobs/cancel", json={"ids": many}), "POST", "/api/jobs/cancel")
    assert (report["count"], report["skipped"]) == (2, [done.id])
    assert sorted(ids(report["jobs"])) == [jobs[1].id, jobs[2].id]
    assert state_of(app, jobs[3].id) == "pending"
    [entry, _] = app.admin.audit()
    assert entry.actor == getpass.getuser() and entry.count == 2  # no credentials: the OS user

    # One unknown id refuses the whole request: nothing is cancelled.
    assert error(client.post("/api/jobs/cancel", json={"ids": [jobs[3].id, 999]}), 404) == (
        "no job 999"
    )
    assert state_of(app, jobs[3].id) == "pending"
    assert "ids" in error(client.post("/api/jobs/cancel", json={"ids": []}), 400)
    assert "'ids'" in error(client.post("/api/jobs/cancel", json={}), 400)


def test_bulk_retry_by_ids_or_every_failed_job(app: App, client: TestClient) -> None:
    bob, eve = fail(app, to="bob"), fail(app, to="eve")
    pending = app.tasks["transcode"].enqueue(n=1)
    path = "/api/jobs/retry"

    dry = check(client.post(path, json={"failed": True, "dry_run": True}), "POST", path)
    assert dry["count"] == 2 and sorted(ids(dry["jobs"])) == sorted([bob.id, eve.id])
    assert state_of(app, bob.id) == state_of(app, eve.id) == "failed"
    none = check(client.post(path, json={"failed": True, "task": "transcode"}), "POST", path)
    assert none["count"] == 0
    some = check(client.post(path, json={"ids": [bob.id, pending.id]}), "POST", path)
    assert (some["count"], some["skipped"]) == (1, [pending.id])
    assert state_of(app, bob.id) == "pending" and state_of(app, eve.id) == "failed"
    rest = check(client.post(path, json={"failed": True, "queue": "notifications"}), "POST", path)
    assert ids(rest["jobs"]) == [eve.id] and state_of(app, eve.id) == "pending"
    assert app.admin.audit(action="jobs.retry")[0].params["failed"] is True

    for body, says in [
        ({"ids": [bob.id], "failed": True}, "not both"),
        ({}, "'ids'"),
        ({"ids": [bob.id], "queue": "content"}, "go with"),
        ({"failed": True, "args": {"to": "x"}}, "'args' goes with 'ids'"),
        ({"failed": True, "queue": "Bad Queue"}, "invalid queue name"),
    ]:
        assert says in error(client.post(path, json=body), 400), body


def test_purge_counts_and_dry_run_deletes_nothing(
    app: App, client: TestClient, clock: FrozenClock
) -> None:
    app.tasks["transcode"].enqueue_many([{"n": i} for i in range(3)])
    app.run_worker(queues=["content"], burst=True)
    clock.advance(2 * 86400)
    fresh = app.tasks["transcode"].enqueue(n=9)
    app.run_worker(queues=["content"], burst=True)
    path = "/api/jobs/purge"
    dry = check(
        client.post(path, json={"state": "complete", "older_than": "1d", "dry_run": True}),
        "POST",
        path,
    )
    assert dry == {
        "action": "purge",
        "dry_run": True,
        "count": 3,
        "state": "complete",
        "older_than": 86400.0,
        "queue": None,
    }
    assert len(app.admin.list_jobs()) == 4
    assert (
        check(
            client.post(path, json={"state": "complete", "older_than": 86400, "queue": "other"}),
            "POST",
            path,
        )["count"]
        == 0
    )
    done = check(client.post(path, json={"state": "complete", "older_than": "1d"}), "POST", path)
    assert done["count"] == 3 and [job.id for job in app.admin.list_jobs()] == [fresh.id]
    assert "cannot purge 'pending'" in error(
        client.post(path, json={"state": "pending", "older_than": "1d"}), 400
    )
    assert "older_than" in error(client.post(path, json={"state": "complete"}), 400)
    assert "older_than" in error(
        client.post(path, json={"state": "complete", "older_than": "soon"}), 400
    )


def test_pause_and_resume_a_queue(app: App, admin_client: TestClient) -> None:
    paused = check(
        admin_client.post("/api/queues/content/pause", json={}), "POST", "/api/queues/{queue}/pause"
    )
    assert paused["queue"] == "content" and paused["paused"] is True
    queues = check(admin_client.get("/api/queues"), "GET", "/api/queues")
    assert next(q for q in queues if q["queue"] == "content")["paused"] is True
    job = app.tasks["transcode"].enqueue(n=1)
    app.run_worker(queues=["content"], burst=True)
    assert state_of(app, job.id) == "pending"  # a paused queue gives nothing to workers

    resumed = check(
        admin_client.post("/api/queues/content/resume", json={}),
        "POST",
        "/api/queues/{queue}/resume",
    )
    assert resumed["paused"] is False
    actions = [(e.actor, e.action) for e in app.admin.audit()]
    assert actions == [(ADMIN[0], "queues.resume"), (ADMIN[0], "queues.pause")]
    assert "invalid queue name" in error(admin_client.post("/api/queues/A%20B/pause", json={}), 400)


def test_review_list_and_resolve(app: App, admin_client: TestClient) -> None:
    bob, eve = fail(app, to="bob"), fail(app, to="eve")
    listed = check(admin_client.get("/api/review"), "GET", "/api/review")
    assert ids(listed) == [eve.id, bob.id]
    assert ids(check(admin_client.get("/api/review?limit=1"), "GET", "/api/review")) == [eve.id]
    path = "/api/review/resolve"
    resolved = check(
        admin_client.post(path, json={"ids": [bob.id], "note": "mailbox fixed"}), "POST", path
    )
    assert resolved["action"] == "resolve" and ids(resolved["jobs"]) == [bob.id]
    assert ids(check(admin_client.get("/api/review"), "GET", "/api/review")) == [eve.id]
    job = app.get_job(bob.id)
    assert job is not None and job.review_note == "mailbox fixed" and job.state == "failed"
    [entry] = check(admin_client.get("/api/audit?action=review.resolve"), "GET", "/api/audit")
    assert entry["actor"] == ADMIN[0] and entry["params"]["note"] == "mailbox fixed"
    assert "'note'" in error(admin_client.post(path, json={"ids": [eve.id]}), 400)
    assert "note" in error(admin_client.post(path, json={"ids": [eve.id], "note": " "}), 400)
    assert ids(check(admin_client.get("/api/review"), "GET", "/api/review")) == [eve.id]


def test_expire_stuck_and_clear_locks(
    app: App, admin_client: TestClient, clock: FrozenClock
) -> None:
    app.tasks["transcode"].enqueue_many([{"n": 1}, {"n": 2}])
    heartbeat(app, "w-old")
    old = claim(app, "w-old")
    clock.advance(600)
    heartbeat(app, "w-new")
    new = claim(app, "w-new")
    path = "/api/admin/expire-stuck"
    dry = check(admin_client.post(path, json={"older_than": "5m", "dry_run": True}), "POST", path)
    assert dry["action"] == "expire" and ids(dry["jobs"]) == [old.id]
    assert dry["jobs"][0]["worker"] == "w-old"
    assert state_of(app, old.id) == "running"
    expired = check(admin_client.post(path, json={"older_than": "5m", "fail": True}), "POST", path)
    assert ids(expired["jobs"]) == [old.id]
    failed = app.get_job(old.id)
    assert failed is not None and failed.state == "failed" and failed.failure == "expired"
    assert ADMIN[0] in (failed.error or "")
    assert state_of(app, new.id) == "running"
    assert "older_than" in error(admin_client.post(path, json={}), 400)

    # w-new falls silent: after dead_for its lock is released.
    clock.advance(20)
    path = "/api/admin/clear-locks"
    assert check(admin_client.post(path, json={"dead_for": "60s"}), "POST", path)["count"] == 0
    clock.advance(100)
    heartbeat(app, "w-old")  # alive, but holds nothing now
    dry = check(admin_client.post(path, json={"dead_for": 60, "dry_run": True}), "POST", path)
    assert ids(dry["jobs"]) == [new.id] and state_of(app, new.id) == "running"
    released = check(admin_client.post(path, json={}), "POST", path)
    assert released["action"] == "release" and ids(released["jobs"]) == [new.id]
    assert released["jobs"][0]["worker"] == "w-new"
    assert state_of(app, new.id) == "pending"
    actions = [(e.actor, e.action) for e in app.admin.audit()]
    assert actions == [
        (ADMIN[0], "admin.clear-locks"),
        (ADMIN[0], "admin.clear-locks"),
        (ADMIN[0], "admin.expire-stuck"),
    ]


def test_audit_filters(app: App, admin_client: TestClient) -> None:
    admin_client.post("/api/queues/content/pause", json={})
    app.admin.pause("indexing", actor="someone-else")
    every = check(admin_client.get("/api/audit"), "GET", "/api/audit")
    assert [e["actor"] for e in every] == ["someone-else", ADMIN[0]]
    mine = check(admin_client.get(f"/api/audit?actor={ADMIN[0]}"), "GET", "/api/audit")
    assert [e["params"]["queue"] for e in mine] == ["content"]
    older = check(admin_client.get(f"/api/audit?before={every[0]['id']}"), "GET", "/api/audit")
    assert ids(older) == [every[1]["id"]]
    assert check(admin_client.get("/api/audit?action=jobs.purge"), "GET", "/api/audit") == []


# -- what the API refuses ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"content-type": "application/x-www-form-urlencoded"},
        {"content-type": "text/plain"},
        {"content-type": "multipart/form-data; boundary=x"},
        {"content-type": "application/jsonx"},
    ],
)
def test_posts_must_be_json(app: App, client: TestClient, headers: dict[str, str]) -> None:
    job = app.tasks["transcode"].enqueue(n=1)
    response = client.post(f"/api/jobs/{job.id}/cancel", content=b"{}", headers=headers)
    assert "application/json" in error(response, 415)
    assert state_of(app, job.id) == "pending"


def test_json_with_a_charset_and_an_empty_body_are_taken(app: App, client: TestClient) -> None:
    job = app.tasks["transcode"].enqueue(n=1)
    response = client.post(
        f"/api/jobs/{job.id}/cancel",
        content=b"",
        headers={"content-type": "Application/JSON; charset=utf-8"},
    )
    assert response.status_code == 200 and state_of(app, job.id) == "cancelled"


@pytest.mark.parametrize(
    ("path", "body", "says"),
    [
        ("/api/jobs/cancel", b"{bad json", "malformed JSON body"),
        ("/api/jobs/cancel", b"[1, 2]", "must be a JSON object"),
        ("/api/jobs/cancel", b'"text"', "must be a JSON object"),
        ("/api/jobs/cancel", b'{"ids": [1], "dry_run": NaN}', "NaN is not JSON"),
        ("/api/jobs/cancel", b'{"ids": "1"}', "'ids' in the body: must be an array of integers"),
        ("/api/jobs/cancel", b'{"ids": [true]}', "must be an array of integers"),
        ("/api/jobs/cancel", b'{"ids": [1.5]}', "must be an array of integers"),
        ("/api/jobs/cancel", b'{"ids": [1], "dry_run": "yes"}', "'dry_run' in the body"),
        ("/api/jobs/cancel", b'{"idz": [1]}', "unknown field 'idz'"),
        ("/api/jobs/retry", b'{"ids": [1], "args": [1]}', "'args' in the body: must be a JSON"),
        ("/api/jobs/purge", b'{"state": 3, "older_than": "1d"}', "'state' in the body"),
        ("/api/jobs/purge", b'{"state": "complete", "older_than": true}', "'older_than'"),
        ("/api/queues/content/pause", b'{"queue": "x"}', "unknown field 'queue'"),
        ("/api/jobs/cancel", b"\xff\xfe", "malformed JSON body"),
    ],
)
def test_malformed_bodies_are_400_in_one_line(
    client: TestClient, path: str, body: bytes, says: str
) -> None:
    response = client.post(path, content=body, headers={"content-type": JSON})
    assert says in error(response, 400)


def test_query_parameters_on_a_post_and_oversized_bodies_are_refused(
    app: App, client: TestClient
) -> None:
    job = app.tasks["transcode"].enqueue(n=1)
    assert "unknown query parameter" in error(
        client.post(f"/api/jobs/{job.id}/cancel?dry_run=true", json={}), 400
    )
    huge = json.dumps({"args": {"blob": "x" * (2 * 1024 * 1024)}}).encode()
    response = client.post(
        f"/api/jobs/{job.id}/retry", content=huge, headers={"content-type": JSON}
    )
    assert "over" in error(response, 413)
    assert state_of(app, job.id) == "pending"


def test_get_on_an_action_is_405(client: TestClient) -> None:
    response = client.get("/api/jobs/retry")
    assert error(response, 405) == "Method Not Allowed"
    assert response.headers["allow"] == "POST"


@pytest.fixture
def unreachable_url(db_url: str, tmp_path: Any) -> str:
    """A database of the test's backend that cannot be reached."""
    if db_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path}/no/such/dir/roadie.db"
    return "postgresql://roadie@127.0.0.1:1/roadie"


def test_an_unreachable_database_is_503(
    unreachable_url: str, make_client: Callable[..., TestClient]
) -> None:
    from roadie.web import create_app

    with App(unreachable_url) as down:
        client = make_client(create_app(down))
        for path in ("/api/jobs", "/api/jobs/1", "/api/queues", "/api/stats", "/api/locks"):
            assert error(client.get(path), 503), path
        check(client.get("/api/jobs"), "GET", "/api/jobs", 503)
        assert client.post("/api/jobs/cancel", json={"ids": [1]}).status_code == 503
        assert client.get("/metrics").status_code == 503
        health = check(client.get("/healthz"), "GET", "/healthz", 503)
        assert health["database"].startswith("unreachable: ")
        assert len(health["database"]) > len("unreachable: ")  # no credentials: anyone is told

        # With credentials configured, a stranger learns only that it is unreachable.
        secured = make_client(create_app(down, auth="a:b"))
        told = secured.get("/healthz").json()["database"]
        assert told == "unreachable: see the dashboard's log"


def test_an_unmigrated_database_is_503(
    tmp_path: Any, make_client: Callable[..., TestClient]
) -> None:
    from roadie.web import create_app

    with App(f"sqlite:///{tmp_path}/empty.db") as empty:
        client = make_client(create_app(empty))
        assert "roadie migrate" in error(client.get("/api/jobs"), 503)
        assert client.get("/healthz").status_code == 503
