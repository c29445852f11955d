"""The dashboard's HTML pages and form actions on both backends, with a frozen clock.

Every page renders real data; every action works, reports how many jobs it touched and lands in
the audit log under the user's name; mass and destructive actions change nothing until
confirmed; bad input and missing or wrong CSRF tokens change nothing; viewers see no action;
hostile arguments and errors come out escaped; the overview's alerts and charts follow the data.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from roadie import App, FrozenClock, Permanent
from roadie.backends.base import WorkerInfo
from roadie.jobs import Fence
from roadie.report import span
from tests.web.conftest import ADMIN, BASE_URL

PAGES = ("/", "/jobs", "/queues", "/workers", "/locks", "/failures", "/review", "/audit")
SCRIPT = "<script>alert(1)</script>"
BREAKOUT = '"><img src=x onerror=alert(1)>'
HOSTILE = SCRIPT + BREAKOUT
LEASE = 3600.0


@pytest.fixture
def app(frozen_app: App) -> App:
    """The dashboard's App (tests/web/conftest.py builds the dashboard on it), frozen clock."""

    @frozen_app.task(queue="content")
    def publish(ctx, video: int) -> dict[str, int]:
        for fmt in ("480p", "720p"):
            ctx.spawn(transcode, video=video, fmt=fmt)
        return {"video": video}

    @frozen_app.task(queue="content")
    def transcode(ctx, video: int, fmt: str) -> dict[str, Any]:
        return {"video": video, "fmt": fmt}

    @frozen_app.task(queue="email", max_attempts=1)
    def send(ctx, user: int) -> None:
        _deliver(user)

    @frozen_app.task(queue="email", max_attempts=1)
    def verify(ctx, address: str) -> None:
        raise Permanent(f"{address} does not exist")

    @frozen_app.task(queue="slow")
    def hold(ctx) -> None: ...

    @frozen_app.task(queue="search")
    def index(ctx, doc: str = "") -> None: ...

    return frozen_app


def _deliver(user: int) -> None:
    raise ConnectionRefusedError(f"smtp relay refused the message for user {user}")


@dataclass
class Seeded:
    parent: int
    children: list[int]
    failed: list[int]  # exhausted, with a traceback
    hostile: int  # failed: args and error hold markup
    pending: list[int]
    cancelled: int
    running: int  # held by the live worker "w-live", 40 % done


def heartbeat(app: App, worker: str = "w-live", queues: tuple[str, ...] = ("slow",)) -> None:
    app.backend.worker_heartbeat(WorkerInfo(worker, "host-a", 4242, list(queues), 2))


@pytest.fixture
def seeded(app: App) -> Seeded:
    """Jobs in every state: a parent with two children, failures, pending and cancelled jobs,
    and a running job with progress held by a live worker."""
    tasks = app.tasks
    parent = tasks["publish"].enqueue(video=7)
    failed = [tasks["send"].enqueue(user=13).id, tasks["send"].enqueue(user=14).id]
    hostile = tasks["verify"].enqueue(address=HOSTILE)
    assert app.run_worker(queues=["content", "email"], burst=True, concurrency=1) == 0
    pending = [tasks["index"].enqueue(doc=f"d{i}").id for i in range(3)]
    cancelled = tasks["index"].enqueue(doc="gone")
    app.admin.cancel([cancelled.id], actor="seed")
    running = tasks["hold"].enqueue()
    heartbeat(app)
    [claimed] = app.backend.job_claim("w-live", "slow", 1, LEASE)
    assert claimed.id == running.id
    progress = json.dumps({"fraction": 0.4, "message": "half way"})
    assert app.backend.job_progress(Fence(claimed.id, claimed.attempt, "w-live"), progress)
    children = [child.id for child in app.admin.get_job(parent.id).children or []]
    assert len(children) == 2
    return Seeded(parent.id, children, failed, hostile.id, pending, cancelled.id, running.id)


# -- reading pages -----------------------------------------------------------------------------


def token(client: TestClient, path: str = "/") -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', client.get(path).text)
    assert found, f"no CSRF token on {path}"
    return found.group(1)


def post(
    client: TestClient, path: str, data: dict[str, Any] | None = None, *, csrf: str | None = None
) -> httpx.Response:
    """POST a form as a browser would (the CSRF token of `client`'s user unless given), following
    the redirect back."""
    form = {"csrf_token": csrf if csrf is not None else token(client), **(data or {})}
    return client.post(path, data=form)


def notice(response: httpx.Response) -> tuple[str, str] | None:
    """The page's (class, text) of #notice, or None."""
    found = re.search(r'<p id="notice" class="([^"]*)"[^>]*>(.*?)</p>', response.text, re.S)
    return (found.group(1), html.unescape(found.group(2)).strip()) if found else None


def row_ids(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-job-id="(\d+)"', page)]


def forms(page: str) -> dict[str, str]:
    """Each form's action and its markup."""
    return dict(re.findall(r'<form[^>]*action="([^"]+)"[^>]*>(.*?)</form>', page, re.S))


def main_of(page: str) -> str:
    found = re.search(r"<main>(.*)</main>", page, re.S)
    assert found, "no <main>"
    return found.group(1)


def card(page: str, queue: str) -> str:
    found = re.search(rf'<article [^>]*data-queue="{queue}">(.*?)</article>', page, re.S)
    assert found, f"no overview block for {queue}"
    return found.group(1)


def audit_actions(app: App) -> list[tuple[str, str, int]]:
    return [(e.actor, e.action, e.count) for e in app.admin.audit()]


# -- every page --------------------------------------------------------------------------------


def test_every_page_renders_real_data_in_the_layout(
    client: TestClient, app: App, seeded: Seeded
) -> None:
    for path in (*PAGES, f"/jobs/{seeded.parent}", f"/jobs/{seeded.failed[0]}"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/html")
        page = response.text
        assert "<main>" in page and "</main>" in page
        for link in PAGES:
            assert f'<a href="{link}"' in page, (path, link)
        # Nothing inline: the CSP forbids inline scripts and styles.
        assert not re.search(r"<script(?![^>]*\bsrc=)", page), path
        assert " style=" not in page and "<style" not in page, path
        assert "content-security-policy" in response.headers

    overview = client.get("/").text
    for queue in ("content", "email", "search", "slow"):
        assert f'data-queue="{queue}"' in overview
    assert '<svg viewBox="0 0 240' in overview and "<title>Jobs finished per 5m" in overview

    jobs = client.get("/jobs").text
    ids = row_ids(jobs)
    assert set(ids) >= {seeded.parent, *seeded.children, *seeded.failed, seeded.running}
    assert ids == sorted(ids, reverse=True)  # newest first
    assert 'form id="filters"' in jobs and ">Filter</button>" in jobs

    job = client.get(f"/jobs/{seeded.running}").text
    assert '<span id="job-state" class="state state-running">running</span>' in job
    assert '<progress max="1" value="0.4">' in job and "half way" in job
    assert "w-live" in job and "holder-alive" in job

    workers = client.get("/workers").text
    assert 'data-worker-id="w-live"' in workers and ">alive</span>" in workers

    locks = client.get("/locks").text
    assert row_ids(locks) == [seeded.running]
    assert "holder-alive" in locks and 'action="/locks/expire-stuck"' in locks

    failures = client.get("/failures").text
    assert 'data-failure-task="send"' in failures and 'data-failure-task="verify"' in failures
    assert "ConnectionRefusedError" in failures

    review = client.get("/review").text
    assert set(row_ids(review)) == {*seeded.failed, seeded.hostile}

    audit = client.get("/audit").text
    assert "jobs.cancel" in audit and ">seed</td>" in audit


def test_a_job_page_shows_everything_about_it(client: TestClient, app: App, seeded: Seeded) -> None:
    parent = client.get(f"/jobs/{seeded.parent}").text
    assert '<span id="job-state" class="state state-complete">complete</span>' in parent
    for child in seeded.children:
        assert f'<a href="/jobs/{child}">' in parent
    assert "&#34;video&#34;: 7" in parent  # the result, as JSON
    assert "2 complete" in parent
    child = client.get(f"/jobs/{seeded.children[0]}").text
    assert f'<a href="/jobs/{seeded.parent}">' in child  # ... and back to the parent

    failed = client.get(f"/jobs/{seeded.failed[0]}").text
    assert "state-failed" in failed and "exhausted" in failed
    tracebacks = re.findall(r'<pre class="traceback">(.*?)</pre>', failed, re.S)
    assert len(tracebacks) == 1 and "ConnectionRefusedError" in tracebacks[0]
    assert "_deliver" in tracebacks[0]  # the frames, not only the message
    assert "<details open>" in failed
    for label in ("created", "run at", "started", "finished", "run time", "waited"):
        assert f"<dt>{label}</dt>" in failed
    actions = forms(failed)
    assert ">Retry</button>" in actions[f"/jobs/{seeded.failed[0]}/retry"]
    assert 'name="args"' in actions[f"/jobs/{seeded.failed[0]}/retry"]
    assert f"/jobs/{seeded.failed[0]}/resolve" in actions
    assert f"/jobs/{seeded.failed[0]}/cancel" not in actions  # it has ended

    page = client.get(f"/jobs/{seeded.pending[0]}").text
    assert re.search(
        rf'<form[^>]*action="/jobs/{seeded.pending[0]}/cancel"[^>]*'
        rf'data-confirm="Cancel job {seeded.pending[0]}\?',
        page,
    )
    assert f"/jobs/{seeded.pending[0]}/retry" not in forms(page)  # not failed or cancelled


def facts(page: str) -> dict[str, str]:
    """The job page's facts (About, Timing, Lock): label -> text."""
    return {
        html.unescape(label): re.sub(r"<[^>]+>", "", html.unescape(value)).strip()
        for label, value in re.findall(r"<dt>(.*?)</dt><dd[^>]*>(.*?)</dd>", page, re.S)
    }


def attempt_items(page: str) -> list[tuple[str, str, str]]:
    """The Attempts list, first shown first: (attempt number, outcome, text without tags)."""
    items = re.findall(
        r'<li class="attempt outcome-([a-z]+)" data-attempt="(\d+)">(.*?)</li>', page, re.S
    )
    return [
        (number, outcome, " ".join(re.sub(r"<[^>]+>", " ", html.unescape(text)).split()))
        for outcome, number, text in items
    ]


def test_a_running_job_shows_its_attempt_in_progress(
    client: TestClient, app: App, clock: FrozenClock, seeded: Seeded
) -> None:
    clock.advance(90)
    page = client.get(f"/jobs/{seeded.running}").text
    assert "No attempt yet" not in page
    [(number, outcome, text)] = attempt_items(page)
    assert (number, outcome) == ("1", "running")
    assert "on w-live" in text and "started 2030-01-01 00:00:00Z" in text
    assert "running for 1m30s" in text
    assert facts(page)["started"] == "2030-01-01 00:00:00Z"  # not a last attempt's: this one's

    # Attempt 2 running after a failed attempt 1: the one in progress first, then the record.
    fence = Fence(seeded.running, 1, "w-live")
    assert app.backend.job_retry(fence, 0.0, "retry", "TimeoutError: slow disk", "Traceback ...")
    clock.advance(1)
    [claimed] = app.backend.job_claim("w-live", "slow", 1, LEASE)
    assert (claimed.id, claimed.attempt) == (seeded.running, 2)
    clock.advance(5)
    items = attempt_items(client.get(f"/jobs/{seeded.running}").text)
    assert [(n, o) for n, o, _ in items] == [("2", "running"), ("1", "retry")]
    assert "running for 5.0s" in items[0][2] and "TimeoutError: slow disk" in items[1][2]

    ended = client.get(f"/jobs/{seeded.failed[0]}").text  # an ended job: no attempt in progress
    assert [(n, o) for n, o, _ in attempt_items(ended)] == [("1", "failed")]


def test_a_pending_job_labels_what_its_last_attempt_left(
    client: TestClient, app: App, clock: FrozenClock, seeded: Seeded
) -> None:
    job_id = seeded.failed[0]
    failed = facts(client.get(f"/jobs/{job_id}").text)
    assert failed["error"].startswith("ConnectionRefusedError") and failed["started"] != "-"
    assert "last error" not in failed

    app.admin.retry([job_id])
    clock.advance(60)
    page = client.get(f"/jobs/{job_id}").text
    shown = facts(page)
    for plain in ("error", "started", "run time"):
        assert plain not in shown, plain  # nothing left unlabelled
    assert shown["last error"].startswith("ConnectionRefusedError: smtp relay refused")
    assert shown["last attempt started"] == failed["started"]
    assert shown["last attempt ran"] == failed["run time"]
    assert shown["finished"] == "-" and shown["waited"] == "-"
    assert [(n, o) for n, o, _ in attempt_items(page)] == [("1", "failed")]

    # A job that never ran has nothing to label.
    fresh = facts(client.get(f"/jobs/{seeded.pending[0]}").text)
    assert fresh["error"] == "-" and fresh["started"] == "-" and "last error" not in fresh


def test_a_scheduled_job_says_when_it_is_due(
    client: TestClient, app: App, clock: FrozenClock, seeded: Seeded
) -> None:
    later = app.tasks["index"].options(delay="1h").enqueue(doc="later").id
    clock.advance(61)

    def state_cell(listing: str, job_id: int) -> str:
        found = re.search(rf'<tr data-job-id="{job_id}".*?</tr>', listing, re.S)
        assert found, f"no row for job {job_id}"
        cell = re.search(r'<td class="state-cell">(.*?)</td>', found.group(0), re.S)
        assert cell
        return " ".join(re.sub(r"<[^>]+>", " ", cell.group(1)).split())

    listing = client.get("/jobs").text
    assert state_cell(listing, later) == "pending due in 58m59s"
    assert 'title="due 2030-01-01 01:00:00Z"' in listing
    assert state_cell(listing, seeded.pending[0]) == "pending"  # due now: nothing to add

    page = client.get(f"/jobs/{later}").text
    assert re.search(r'<span class="badge due" id="job-due"[^>]*>due in 58m59s</span>', page)
    assert facts(page)["run at"] == "2030-01-01 01:00:00Z (in 58m59s)"
    assert "No attempt yet: due in 58m59s." in page
    assert 'id="job-due"' not in client.get(f"/jobs/{seeded.pending[0]}").text

    clock.advance(3600)  # now overdue (nobody serves the queue): plain pending again
    assert state_cell(client.get("/jobs").text, later) == "pending"


@pytest.mark.parametrize(
    "seconds, text",
    [(0, "0ms"), (59.9, "59s"), (60, "1m00s"), (3599, "59m59s"), (3600, "1h00m"), (3900, "1h05m"),
     (86400, "1d00h"), (2 * 86400 + 3 * 3600 + 59, "2d03h")],
)  # fmt: skip
def test_countdowns_read_like_a_clock(seconds: float, text: str) -> None:
    assert span(seconds) == text


def test_unknown_job_is_a_404_page(client: TestClient, app: App) -> None:
    for path in ("/jobs/424242", "/jobs/99999999999999999999999"):
        response = client.get(path)
        assert response.status_code == 404
        assert "<main>" in response.text and "no job" in response.text
    response = post(client, "/jobs/424242/retry")
    assert response.status_code == 404 and "no job 424242" in response.text


def test_the_jobs_list_filters_and_pages_like_the_cli(
    client: TestClient, app: App, seeded: Seeded
) -> None:
    failed = client.get("/jobs", params={"state": "failed"}).text
    assert set(row_ids(failed)) == {*seeded.failed, seeded.hostile}
    assert '<option value="failed" selected>' in failed
    children = client.get("/jobs", params={"parent": seeded.parent}).text
    assert set(row_ids(children)) == set(seeded.children)
    errors = client.get("/jobs", params={"error": "SMTP RELAY"}).text
    assert set(row_ids(errors)) == set(seeded.failed)
    review = client.get("/jobs", params={"review": "1", "queue": "email"}).text
    assert set(row_ids(review)) == {*seeded.failed, seeded.hostile}
    assert row_ids(client.get("/jobs", params={"since": "1m", "task": "index"}).text) == list(
        reversed([*seeded.pending, seeded.cancelled])
    )
    assert row_ids(client.get("/jobs", params={"until": "1h"}).text) == []

    everything = row_ids(client.get("/jobs").text)
    first = client.get("/jobs", params={"limit": "50"}).text
    assert row_ids(first) == everything[:50]
    two = client.get("/jobs", params={"limit": 2, "task": "index"}).text
    assert row_ids(two) == [seeded.cancelled, seeded.pending[2]]
    next_link = re.search(r'href="(/jobs\?[^"]*before=\d+[^"]*)" rel="next"', two)
    assert next_link, "a full page links to the next one"
    rest = client.get(html.unescape(next_link.group(1))).text
    assert row_ids(rest) and max(row_ids(rest)) < min(row_ids(two))
    assert set(row_ids(rest)).isdisjoint(row_ids(two))

    for bad in ({"since": "whenever"}, {"parent": "x"}, {"state": "lost"}, {"limit": "0"}):
        response = client.get("/jobs", params=bad)
        assert response.status_code == 400, bad
        assert notice(response) is not None and notice(response)[0] == "notice error"
        assert row_ids(response.text) == []


# -- single-job actions ------------------------------------------------------------------------


def test_retry_a_failed_job(admin_client: TestClient, app: App, seeded: Seeded) -> None:
    job_id = seeded.failed[0]
    response = post(admin_client, f"/jobs/{job_id}/retry", {"next": f"/jobs/{job_id}"})
    assert response.status_code == 200 and str(response.url).endswith(f"/jobs/{job_id}")
    assert notice(response) == ("notice", f"retried job {job_id}")
    assert '<span id="job-state" class="state state-pending">pending</span>' in response.text
    job = app.get_job(job_id)
    assert job.state == "pending" and job.args == {"user": 13} and job.args_history == []
    assert audit_actions(app)[0] == (ADMIN[0], "jobs.retry", 1)
    # The notice shows once.
    assert notice(admin_client.get(f"/jobs/{job_id}")) is None
    # Retrying it again changes nothing and says why.
    again = post(admin_client, f"/jobs/{job_id}/retry")
    assert notice(again) == (
        "notice",
        f"job {job_id} was not retried: it is pending, not failed or cancelled",
    )


def test_retry_with_edited_arguments(client: TestClient, app: App, seeded: Seeded) -> None:
    job_id = seeded.failed[1]
    unchanged = post(client, f"/jobs/{job_id}/retry", {"args": '{"user": 14}'})
    assert notice(unchanged) == ("notice", f"retried job {job_id}")
    assert app.get_job(job_id).args_history == []  # the arguments shown, sent back as they were

    app.admin.cancel([job_id])
    response = post(client, f"/jobs/{job_id}/retry", {"args": '{"user": 99}'})
    assert notice(response) == ("notice", f"retried job {job_id} with new arguments")
    job = app.get_job(job_id)
    assert job.args == {"user": 99} and job.args_history[0]["args"] == {"user": 14}
    assert "Earlier arguments" in client.get(f"/jobs/{job_id}").text


@pytest.mark.parametrize(
    "args, reason",
    [
        ('{"user": ', "malformed JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"user": NaN}', "NaN"),
    ],
)
def test_bad_arguments_change_nothing(
    client: TestClient, app: App, seeded: Seeded, args: str, reason: str
) -> None:
    job_id = seeded.failed[0]
    before = audit_actions(app)
    response = post(client, f"/jobs/{job_id}/retry", {"args": args, "next": f"/jobs/{job_id}"})
    kind, text = notice(response)
    assert kind == "notice error" and reason in text
    job = app.get_job(job_id)
    assert job.state == "failed" and job.args == {"user": 13}
    assert audit_actions(app) == before


def test_cancel_a_job_and_resolve_a_review(
    admin_client: TestClient, app: App, seeded: Seeded
) -> None:
    job_id = seeded.pending[0]
    response = post(admin_client, f"/jobs/{job_id}/cancel")
    assert notice(response) == ("notice", f"cancelled job {job_id}")
    assert app.get_job(job_id).state == "cancelled"
    assert str(response.url).endswith(f"/jobs/{job_id}")  # no `next`: back to the job
    again = post(admin_client, f"/jobs/{job_id}/cancel")
    assert "already ended" in notice(again)[1]

    failed = seeded.failed[0]
    empty = post(admin_client, f"/jobs/{failed}/resolve", {"note": "  "})
    assert notice(empty)[0] == "notice error" and app.get_job(failed).needs_review
    response = post(admin_client, f"/jobs/{failed}/resolve", {"note": "relay fixed"})
    assert notice(response) == ("notice", f"resolved the review of job {failed}")
    job = app.get_job(failed)
    assert not job.needs_review and job.review_note == "relay fixed" and job.state == "failed"
    assert audit_actions(app)[0] == (ADMIN[0], "review.resolve", 1)


# -- mass actions ------------------------------------------------------------------------------


def test_retry_and_cancel_a_selection(client: TestClient, app: App, seeded: Seeded) -> None:
    chosen = [*seeded.failed, seeded.parent]
    response = post(client, "/jobs/retry", {"ids": chosen, "next": "/jobs?state=failed"})
    assert str(response.url).endswith("/jobs?state=failed")
    assert notice(response) == (
        "notice",
        f"retried 2 jobs: {seeded.failed[0]}, {seeded.failed[1]}; "
        f"left 1 job not failed or cancelled: {seeded.parent}",
    )
    assert [app.get_job(i).state for i in seeded.failed] == ["pending", "pending"]

    response = post(client, "/jobs/cancel", {"ids": [*seeded.pending[:2], seeded.parent]})
    assert notice(response)[1].startswith("cancelled 2 jobs")
    assert [app.get_job(i).state for i in seeded.pending] == ["cancelled", "cancelled", "pending"]

    nothing = post(client, "/jobs/cancel", {})
    assert notice(nothing) == ("notice error", "select the jobs to cancel first")
    unknown = post(client, "/jobs/retry", {"ids": [seeded.cancelled, 777777]})
    assert notice(unknown) == ("notice error", "no job 777777")
    assert app.get_job(seeded.cancelled).state == "cancelled"  # all or nothing


def test_retry_everything_matching_asks_first(
    admin_client: TestClient, app: App, seeded: Seeded
) -> None:
    fields = {"all_matching": "1", "queue": "email", "task": "send", "next": "/jobs?queue=email"}
    before = audit_actions(app)
    ask = post(admin_client, "/jobs/retry", fields)
    assert ask.status_code == 200 and "This will retry 2 jobs matching" in ask.text
    assert set(row_ids(ask.text)) == set(seeded.failed)
    assert [app.get_job(i).state for i in seeded.failed] == ["failed", "failed"]
    assert audit_actions(app) == before  # a dry run is not an action
    confirm = forms(ask.text)["/jobs/retry"]
    assert 'name="confirmed" value="1"' in confirm and 'name="task" value="send"' in confirm
    assert ">Retry 2 jobs</button>" in confirm

    done = post(admin_client, "/jobs/retry", {**fields, "confirmed": "1"})
    assert str(done.url).endswith("/jobs?queue=email")
    assert notice(done)[1].startswith("retried 2 jobs")
    assert [app.get_job(i).state for i in seeded.failed] == ["pending", "pending"]
    assert app.get_job(seeded.hostile).state == "failed"  # another task: not matched
    assert audit_actions(app)[0] == (ADMIN[0], "jobs.retry", 2)


def test_cancel_everything_matching_asks_first(
    client: TestClient, app: App, seeded: Seeded
) -> None:
    fields = {"all_matching": "1", "task": "index"}
    ask = post(client, "/jobs/cancel", fields)
    assert "This will cancel 3 jobs matching the filter (task index)" in ask.text
    assert [app.get_job(i).state for i in seeded.pending] == ["pending"] * 3
    done = post(client, "/jobs/cancel", {**fields, "confirmed": "1"})
    assert notice(done)[1].startswith("cancelled 3 jobs")
    assert [app.get_job(i).state for i in seeded.pending] == ["cancelled"] * 3
    assert app.get_job(seeded.running).state == "running"
    # Nothing left to match: the confirmation page offers nothing to confirm.
    empty = post(client, "/jobs/cancel", fields)
    assert "This will cancel 0 jobs" in empty.text and "/jobs/cancel" not in forms(empty.text)


def test_purge_asks_first_and_counts(
    client: TestClient, app: App, clock: FrozenClock, seeded: Seeded
) -> None:
    clock.advance(8 * 86400)
    fields = {"state": "complete", "older_than": "7d", "next": "/queues"}
    ask = post(client, "/jobs/purge", fields)
    assert "This will delete 3 complete jobs that finished over 7d ago" in ask.text
    assert app.get_job(seeded.parent) is not None
    done = post(client, "/jobs/purge", {**fields, "confirmed": "1"})
    assert str(done.url).endswith("/queues")
    assert notice(done) == ("notice", "purged 3 complete jobs finished over 7d ago")
    assert app.get_job(seeded.parent) is None and app.get_job(seeded.failed[0]) is not None

    for bad in (
        {"state": "complete", "older_than": "forever"},
        {"state": "running", "older_than": "1d"},
    ):
        response = post(client, "/jobs/purge", {**bad, "confirmed": "1"})
        assert notice(response)[0] == "notice error", bad
    assert app.get_job(seeded.cancelled) is not None


def test_pause_and_resume_a_queue(admin_client: TestClient, app: App, seeded: Seeded) -> None:
    queues = admin_client.get("/queues").text
    assert ">Pause</button>" in forms(queues)["/queues/search/pause"]
    response = post(admin_client, "/queues/search/pause", {"next": "/queues"})
    assert notice(response)[1].startswith("paused queue search")
    assert ">Resume</button>" in forms(response.text)["/queues/search/resume"]
    assert {q["queue"]: q["paused"] for q in app.admin.queues()}["search"] is True
    assert "paused" in card(admin_client.get("/").text, "search")
    assert "paused" not in card(admin_client.get("/").text, "content")

    response = post(admin_client, "/queues/search/resume")
    assert notice(response) == ("notice", "resumed queue search")
    assert {q["queue"]: q["paused"] for q in app.admin.queues()}["search"] is False
    assert [a[:2] for a in audit_actions(app)[:2]] == [
        (ADMIN[0], "queues.resume"),
        (ADMIN[0], "queues.pause"),
    ]
    bad = post(admin_client, "/queues/Not A Queue/pause")
    assert notice(bad)[0] == "notice error"


def test_expire_stuck_asks_first(
    client: TestClient, app: App, clock: FrozenClock, seeded: Seeded
) -> None:
    clock.advance(20 * 60)
    fields = {"older_than": "15m", "next": "/locks"}
    ask = post(client, "/locks/expire-stuck", fields)
    assert "This will force 1 job running over 15m out of running" in ask.text
    assert row_ids(ask.text) == [seeded.running]
    assert app.get_job(seeded.running).state == "running"
    done = post(client, "/locks/expire-stuck", {**fields, "confirmed": "1"})
    assert notice(done) == ("notice", f"expired (retried) 1 job: {seeded.running}")
    assert app.get_job(seeded.running).state == "pending"
    bad = post(client, "/locks/expire-stuck", {"older_than": "a while", "confirmed": "1"})
    assert notice(bad)[0] == "notice error"


def test_clear_locks_asks_first(
    client: TestClient, app: App, clock: FrozenClock, seeded: Seeded
) -> None:
    assert post(client, "/locks/clear", {"dead_for": "60s"}).text.count("This will release 0") == 1
    clock.advance(120)  # w-live falls silent
    ask = post(client, "/locks/clear", {"dead_for": "60s"})
    assert "This will release 1 lock" in ask.text and row_ids(ask.text) == [seeded.running]
    assert app.get_job(seeded.running).state == "running"
    done = post(client, "/locks/clear", {"dead_for": "60s", "confirmed": "1"})
    assert notice(done) == ("notice", f"released 1 job: {seeded.running}")
    assert app.get_job(seeded.running).state == "pending"


def test_resolve_selected_reviews(admin_client: TestClient, app: App, seeded: Seeded) -> None:
    response = post(
        admin_client,
        "/review/resolve",
        {"ids": [*seeded.failed, seeded.parent], "note": "relay was down", "next": "/review"},
    )
    assert notice(response)[1].startswith("resolved 2 jobs")
    assert f"left 1 job not awaiting review: {seeded.parent}" in notice(response)[1]
    assert row_ids(response.text) == [seeded.hostile]
    no_note = post(admin_client, "/review/resolve", {"ids": [seeded.hostile], "note": ""})
    assert notice(no_note)[0] == "notice error" and app.get_job(seeded.hostile).needs_review


def test_redirects_stay_on_the_site(client: TestClient, app: App, seeded: Seeded) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        response = post(client, "/queues/search/pause", {"next": target})
        assert str(response.url) == f"{BASE_URL}/queues", target


# -- security ----------------------------------------------------------------------------------


ACTIONS: list[tuple[str, Callable[[Seeded], dict[str, Any]]]] = [
    ("/jobs/{failed}/retry", lambda s: {}),
    ("/jobs/{pending}/cancel", lambda s: {}),
    ("/jobs/{failed}/resolve", lambda s: {"note": "x"}),
    ("/jobs/retry", lambda s: {"ids": s.failed}),
    ("/jobs/cancel", lambda s: {"ids": s.pending}),
    ("/jobs/retry", lambda s: {"all_matching": "1", "confirmed": "1"}),
    ("/jobs/purge", lambda s: {"state": "complete", "older_than": "0s", "confirmed": "1"}),
    ("/queues/content/pause", lambda s: {}),
    ("/locks/expire-stuck", lambda s: {"older_than": "0s", "confirmed": "1"}),
    ("/locks/clear", lambda s: {"dead_for": "0s", "confirmed": "1"}),
    ("/review/resolve", lambda s: {"ids": s.failed, "note": "x"}),
]


def snapshot(app: App) -> Any:
    jobs = [(j.id, j.state, j.needs_review, j.attempt) for j in app.admin.list_jobs(limit=1000)]
    return jobs, app.admin.queues(), audit_actions(app)


@pytest.mark.parametrize("csrf", [None, "", "0" * 64])
def test_posts_without_the_right_token_are_refused(
    admin_client: TestClient, app: App, seeded: Seeded, csrf: str | None
) -> None:
    before = snapshot(app)
    for pattern, fields in ACTIONS:
        path = pattern.format(failed=seeded.failed[0], pending=seeded.pending[0])
        data = dict(fields(seeded))
        if csrf is not None:
            data["csrf_token"] = csrf
        response = admin_client.post(path, data=data)
        assert response.status_code == 403, (path, response.status_code)
        assert "token" in response.text
    assert snapshot(app) == before


def test_another_users_token_is_refused(
    make_client: Callable[..., TestClient], secured_web: Starlette, app: App, seeded: Seeded
) -> None:
    admin = make_client(secured_web, user=ADMIN)
    other = make_client()  # another dashboard: another secret
    stale = token(other)
    before = snapshot(app)
    response = admin.post(f"/jobs/{seeded.failed[0]}/retry", data={"csrf_token": stale})
    assert response.status_code == 403 and snapshot(app) == before


def test_viewers_see_no_action_and_cannot_act(
    viewer_client: TestClient, admin_client: TestClient, app: App, seeded: Seeded
) -> None:
    paths = (*PAGES, f"/jobs/{seeded.failed[0]}", f"/jobs/{seeded.pending[0]}")
    for path in paths:
        page = viewer_client.get(path)
        assert page.status_code == 200, path
        assert 'method="post"' not in page.text, path
        assert "csrf_token" not in page.text, path
        assert 'name="ids"' not in page.text, path
        assert "victor · viewer" in page.text
    assert 'method="post"' in admin_client.get(f"/jobs/{seeded.failed[0]}").text
    stolen = token(admin_client)  # even with an admin's token
    before = snapshot(app)
    response = viewer_client.post(f"/jobs/{seeded.failed[0]}/retry", data={"csrf_token": stolen})
    assert response.status_code == 403 and snapshot(app) == before


def test_read_only_dashboard_shows_no_action(
    make_client: Callable[..., TestClient], app: App, seeded: Seeded
) -> None:
    client = make_client(read_only=True)
    assert 'method="post"' not in client.get("/queues").text
    assert client.post("/queues/content/pause", data={}).status_code == 403


def test_hostile_args_and_errors_are_escaped(client: TestClient, app: App, seeded: Seeded) -> None:
    job_id = seeded.hostile
    pages = [
        f"/jobs/{job_id}",
        "/jobs",
        "/jobs?state=failed",
        "/failures",
        "/review",
    ]
    for path in pages:
        page = client.get(path).text
        assert SCRIPT not in page, path
        assert "<img src=x" not in page and BREAKOUT not in page, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page, path
    job = client.get(f"/jobs/{job_id}").text
    # The error as text, and the arguments as JSON text (its quote escaped by JSON, then HTML).
    assert (
        "&lt;script&gt;alert(1)&lt;/script&gt;&#34;&gt;&lt;img src=x onerror=alert(1)&gt; does not exist"
        in job
    )
    assert (
        "&#34;address&#34;: &#34;&lt;script&gt;alert(1)&lt;/script&gt;\\&#34;&gt;&lt;img src=x onerror=alert(1)&gt;&#34;"
        in job
    )
    # The edit box holds the same JSON, escaped, and a retry with it changes no argument.
    assert re.search(r'<textarea id="retry-args" name="args"[^>]*>[^<]*&lt;script&gt;', job)
    response = post(client, f"/jobs/{job_id}/retry", {"args": json.dumps({"address": HOSTILE})})
    assert notice(response) == ("notice", f"retried job {job_id}")
    assert app.get_job(job_id).args == {"address": HOSTILE}
    # Hostile text in a filter comes back escaped too.
    echoed = client.get("/jobs", params={"error": BREAKOUT}).text
    assert (
        BREAKOUT not in echoed and 'value="&#34;&gt;&lt;img src=x onerror=alert(1)&gt;"' in echoed
    )


# -- the overview ------------------------------------------------------------------------------


def alerts_of(page: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for kind, queue in re.findall(r'data-alert="(\w+)" data-alert-queue="([^"]+)"', page):
        found.setdefault(kind, []).append(queue)
    return found


def test_the_overview_alerts_on_stuck_locks_and_growing_queues(
    client: TestClient, app: App, clock: FrozenClock
) -> None:
    assert "No alerts" in client.get("/").text
    # A task that usually takes a second; one of its jobs has held its lock for two minutes.
    hold = app.tasks["hold"]
    hold.enqueue_many([{}] * 5)
    assert app.run_worker(queues=["slow"], burst=True, concurrency=1) == 0
    stuck = hold.enqueue()
    heartbeat(app)
    assert app.backend.job_claim("w-live", "slow", 1, LEASE)[0].id == stuck.id
    # A queue whose jobs arrive and are not taken.
    app.tasks["index"].enqueue_many([{"doc": str(i)} for i in range(12)])
    clock.advance(30)
    assert alerts_of(client.get("/").text) == {"growing": ["search"]}
    clock.advance(6 * 60)
    page = client.get("/").text
    assert alerts_of(page) == {"stuck": ["slow"], "backlog": ["search"], "growing": ["search"]}
    stuck_alert = re.search(r'<li class="alert alert-stuck".*?</li>', page, re.S).group(0)
    assert f"job {stuck.id} (hold)" in stuck_alert and 'href="/locks"' in stuck_alert
    assert "12 pending" in page
    assert "stuck" in card(page, "slow")
    # The same figures as the admin layer's.
    assert [a.kind for a in app.admin.alerts()] == ["stuck", "backlog", "growing"]


def test_the_overview_charts_follow_the_timeline(
    client: TestClient, app: App, clock: FrozenClock
) -> None:
    send, transcode = app.tasks["send"], app.tasks["transcode"]
    for n in range(4):
        transcode.enqueue(video=n, fmt="480p")
    app.run_worker(queues=["content"], burst=True, concurrency=1)
    clock.advance(25 * 60)
    for user in range(3):
        send.enqueue(user=user)
    transcode.enqueue(video=9, fmt="720p")
    app.run_worker(queues=["content", "email"], burst=True, concurrency=1)
    clock.advance(60)

    page = client.get("/").text
    line = app.admin.timeline("1h", 12)

    def values(queue: str, chart: str) -> list[tuple[float, float]]:
        block = card(page, queue)
        figure = re.search(rf'<figure class="chart chart-{chart}">(.*?)</figure>', block, re.S)
        assert figure, (queue, chart)
        return [
            (float(v), float(p))
            for v, p in re.findall(r'data-value="([\d.]+)" data-part="([\d.]+)"', figure.group(1))
        ]

    content = line["queues"]["content"]
    assert content["finished"][6] == 4 and content["finished"][11] == 1
    assert values("content", "throughput") == [(f, 0) for f in content["finished"]]
    email = line["queues"]["email"]
    assert email["failed"][11] == 3
    assert values("email", "throughput") == list(
        zip(email["finished"], email["failed"], strict=True)
    )
    rates = values("email", "failure-rate")
    assert rates[11] == (1.0, 0) and sum(rate for rate, _ in rates) == 1.0
    # Bar heights follow the counts: 4 fills the content chart, 1 is a quarter of it.
    block = card(page, "content")
    heights = re.findall(
        r'<rect class="bar" x="[\d.]+" y="[\d.]+" width="[\d.]+" height="([\d.]+)"', block
    )
    assert heights[:2] == ["48.0", "12.0"]
    assert "<title>" in block and "4 finished, 0 failed" in block
    figures = card(page, "email")
    assert "100%" in figures  # its failure rate over the hour


# -- what the pages need from the server -------------------------------------------------------


def test_static_files_and_a_mounted_dashboard(app: App, seeded: Seeded) -> None:
    from roadie.web import create_app

    host = Starlette(routes=[Mount("/admin", app=create_app(app))])
    with TestClient(host, base_url=BASE_URL) as client:
        page = client.get("/admin/jobs").text
        assert 'href="/admin/static/roadie.css"' in page and 'src="/admin/static/roadie.js"' in page
        assert f'<a href="/admin/jobs/{seeded.parent}">' in page
        assert 'action="/admin/jobs/retry"' in page
        js = client.get("/admin/static/roadie.js")
        assert js.status_code == 200 and "data-confirm" in js.text
        assert "javascript" in js.headers["content-type"]
        css = client.get("/admin/static/roadie.css")
        assert css.status_code == 200 and ".table-wrap" in css.text
        response = post(client, "/admin/queues/search/pause", csrf=token(client, "/admin/"))
        assert str(response.url) == f"{BASE_URL}/admin/queues"
        assert notice(response)[1].startswith("paused queue search")
