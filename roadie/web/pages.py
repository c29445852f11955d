"""The HTML pages and their form actions.

Every page reads through the admin layer (`request.app.state.roadie.admin`); every action is a
POST carrying the CSRF token that calls the same Admin method as the CLI, with the dashboard's
user as the actor, and answers 303 back to the page it came from with a one-line notice (a
short-lived signed cookie, shown once in `#notice`). Actions over everything matching a filter,
and purge, expire-stuck and clear-locks, first answer a confirmation page with a dry-run count;
they act only when posted again with `confirmed=1`. Bad input changes nothing and comes back as
an error notice. Templates autoescape everything; no user data is ever marked safe.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.templating import Jinja2Templates

from roadie.admin import MAX_LIST_LIMIT, Admin
from roadie.config import parse_duration
from roadie.errors import InvalidInput, JobNotFound
from roadie.jobs import FAILED, PENDING, RUNNING, STATES, TERMINAL_STATES, Job
from roadie.report import after_attempt, locks, round_span, run_time, span, timing
from roadie.web.auth import CSRF_FIELD, Guard, current_user

HERE = Path(__file__).parent
NOTICE_COOKIE = "roadie_notice"
NOTICE_MAX_AGE = 60  # seconds a notice waits for the page it was meant for
PAGE_SIZES = (50, 100, 500, 1000)
DEFAULT_PAGE_SIZE = 100
TIMELINE_WINDOW = "1h"
TIMELINE_BUCKETS = 12
TREE_WIDTH = 50  # children shown per job in a job's tree
TREE_DEPTH = 4  # levels of it
TREE_BUDGET = 200  # jobs read to draw one tree, at most
CONFIRM_SHOWN = 50  # jobs listed on a confirmation page
IDS_SHOWN = 20  # job ids named in one notice
FAILURE_WINDOWS = ("1h", "6h", "24h", "7d")
JOB_FILTERS = ("state", "queue", "task", "parent", "since", "until", "error", "review")
NAV = (
    ("overview", "/", "Overview"),
    ("jobs", "/jobs", "Jobs"),
    ("queues", "/queues", "Queues"),
    ("workers", "/workers", "Workers"),
    ("locks", "/locks", "Locks"),
    ("failures", "/failures", "Failures"),
    ("review", "/review", "Review"),
    ("audit", "/audit", "Audit"),
)


# -- formatting, for the templates -------------------------------------------------------------


def when(value: datetime | str | None) -> str:
    """A moment as UTC text to the second, e.g. 2030-01-01 09:05:03Z."""
    if value is None:
        return "-"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.strftime("%Y-%m-%d %H:%M:%S") + "Z"


def due_in(job: Job, now: datetime) -> float | None:
    """Seconds until a pending job is due, when it is scheduled in the future; else None."""
    if job.state != PENDING or job.run_at <= now:
        return None
    return (job.run_at - now).total_seconds()


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


def first_line(text: str | None, limit: int = 160) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=when,
        span=span,
        json=pretty_json,
        first_line=first_line,
        percent=percent,
    )
    env.globals.update(plural=plural, states=STATES)
    return env


templates = Jinja2Templates(env=_environment())


# -- what every page and action shares ---------------------------------------------------------


def admin_of(request: Request) -> Admin:
    return request.app.state.roadie.admin  # type: ignore[no-any-return]


QUEUE_NAMES_TTL = 30.0  # seconds a page's list of queue names is reused


def queue_names(request: Request) -> list[str]:
    """The queue names a filter form suggests. Counting queues reads the whole jobs table, so
    the list is reused for QUEUE_NAMES_TTL seconds rather than read on every (auto-)refresh."""
    state = request.app.state
    cached = getattr(state, "queue_names", None)
    if cached is not None and time.monotonic() - cached[0] < QUEUE_NAMES_TTL:
        return cached[1]  # type: ignore[no-any-return]
    names = [entry["queue"] for entry in admin_of(request).queues()]
    state.queue_names = (time.monotonic(), names)
    return names


def guard_of(request: Request) -> Guard:
    return request.app.state.guard  # type: ignore[no-any-return]


def prefix(request: Request) -> str:
    """Where the dashboard is mounted ("" at the root): every link and form action starts so."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def here(request: Request) -> str:
    """This page's path and query, to come back to after an action."""
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def render(
    request: Request,
    name: str,
    page: str,
    *,
    status: int = 200,
    error: str | None = None,
    **context: Any,
) -> Response:
    """A page in the layout, with the notice left by the action that led here (or `error`)."""
    user = current_user(request)
    root = prefix(request)
    notice = {"text": error, "error": True} if error else _read_notice(request)
    response = templates.TemplateResponse(
        request,
        name,
        {
            "user": user,
            "can_act": user.is_admin,
            "csrf_field": CSRF_FIELD,
            "csrf": guard_of(request).csrf_token(user),
            "nav": NAV,
            "page": page,
            "root": root,
            "here": here(request),
            "notice": notice,
            **context,
        },
        status_code=status,
    )
    if request.cookies.get(NOTICE_COOKIE) is not None:
        response.delete_cookie(NOTICE_COOKIE, path=root or "/")
    return response


def _sign(guard: Guard, data: str) -> str:
    return hmac.new(guard.secret, b"notice:" + data.encode(), hashlib.sha256).hexdigest()[:32]


def _read_notice(request: Request) -> dict[str, Any] | None:
    cookie = request.cookies.get(NOTICE_COOKIE)
    if not cookie or "." not in cookie:
        return None
    data, _, signature = cookie.rpartition(".")
    if not hmac.compare_digest(signature, _sign(guard_of(request), data)):
        return None
    try:
        notice = json.loads(base64.urlsafe_b64decode(data.encode()).decode())
    except ValueError:
        return None
    if not isinstance(notice, dict) or not isinstance(notice.get("text"), str):
        return None
    return {"text": notice["text"], "error": bool(notice.get("error"))}


def back(
    request: Request, form: Mapping[str, Any], default: str, text: str, error: bool = False
) -> Response:
    """303 to the page the form came from (its `next` field, a path of this site) or `default`,
    leaving `text` as the notice it shows."""
    root = prefix(request)
    response = RedirectResponse(local_path(form.get("next"), root + default), status_code=303)
    data = base64.urlsafe_b64encode(
        json.dumps({"text": text[:500], "error": error}).encode()
    ).decode()
    response.set_cookie(
        NOTICE_COOKIE,
        f"{data}.{_sign(guard_of(request), data)}",
        max_age=NOTICE_MAX_AGE,
        path=root or "/",
        httponly=True,
        samesite="strict",
    )
    return response


def local_path(target: Any, default: str) -> str:
    """`target` if it is a path on this site (no scheme, no host, no backslash), else `default`."""
    if (
        isinstance(target, str)
        and target.startswith("/")
        and not target.startswith("//")
        and "\\" not in target
        and not any(ord(c) < 32 for c in target)
    ):
        return target
    return default


async def checked_form(request: Request) -> FormData:
    """The posted form, after checking its CSRF token (403 and nothing done without it)."""
    form = await request.form()
    token = form.get(CSRF_FIELD)
    guard_of(request).check_csrf(current_user(request), token if isinstance(token, str) else None)
    return form


def actor(request: Request) -> str:
    return current_user(request).name


def text_field(form: Mapping[str, Any], name: str) -> str | None:
    value = form.get(name)
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def parse_ids(values: Iterable[Any]) -> list[int]:
    ids = []
    for value in values:
        try:
            ids.append(int(str(value).strip()))
        except ValueError:
            raise InvalidInput(f"bad job id {str(value)[:40]!r}") from None
    return list(dict.fromkeys(ids))


def id_list(ids: Sequence[int]) -> str:
    shown = ", ".join(str(job_id) for job_id in ids[:IDS_SHOWN])
    return shown + (f" and {len(ids) - IDS_SHOWN} more" if len(ids) > IDS_SHOWN else "")


def outcome(verb: str, jobs: Sequence[Job], given: Sequence[int] = (), why: str = "") -> str:
    """One line saying what a mass action did: "retried 3 jobs: 4, 5, 6; left 1 already ended: 7"."""
    text = f"{verb} {plural(len(jobs), 'job')}"
    if jobs:
        text += f": {id_list([job.id for job in jobs])}"
    touched = {job.id for job in jobs}
    skipped = [job_id for job_id in given if job_id not in touched]
    if skipped:
        text += f"; left {plural(len(skipped), 'job')} {why}: {id_list(skipped)}"
    return text


def not_found(request: Request, what: str) -> Response:
    return render(request, "not_found.html", "", status=404, what=what)


# -- job filters -------------------------------------------------------------------------------


def job_filters(source: Mapping[str, Any]) -> dict[str, str]:
    """The jobs list's filter fields that hold something, as text."""
    filters = {}
    for name in JOB_FILTERS:
        value = source.get(name)
        if isinstance(value, str) and value.strip():
            filters[name] = value.strip()
    return filters


def list_arguments(filters: Mapping[str, str]) -> dict[str, Any]:
    """The filters as `Admin.list_jobs` keyword arguments (InvalidInput for a bad one)."""
    parent = filters.get("parent")
    if parent is not None:
        try:
            parent_id: int | None = int(parent)
        except ValueError:
            raise InvalidInput(
                f"bad parent id {parent[:40]!r}: must be a positive integer"
            ) from None
    else:
        parent_id = None
    return {
        "state": filters.get("state"),
        "queue": filters.get("queue"),
        "task": filters.get("task"),
        "parent_id": parent_id,
        "since": filters.get("since"),
        "until": filters.get("until"),
        "error": filters.get("error"),
        "needs_review": True if filters.get("review") else None,
    }


def page_size(value: Any) -> int:
    if value in (None, ""):
        return DEFAULT_PAGE_SIZE
    try:
        size = int(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"bad limit {str(value)[:40]!r}: must be a whole number") from None
    if not 1 <= size <= MAX_LIST_LIMIT:
        raise InvalidInput(f"bad limit {size}: must be between 1 and {MAX_LIST_LIMIT}")
    return size


def next_page(query: Mapping[str, Any], items: Sequence[Any], limit: int) -> str | None:
    """The link to the page after a full one: the same query, below the last id shown."""
    if len(items) < limit:
        return None
    return "?" + urlencode({k: v for k, v in {**query, "before": items[-1].id}.items() if v})


def optional_id(value: Any, what: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"bad {what} {str(value)[:40]!r}: must be a job id") from None


def matching(admin: Admin, filters: Mapping[str, str], states: Sequence[str]) -> list[Job]:
    """Every job matching the filters whose state is one of `states`, newest first."""
    arguments = list_arguments(filters)
    wanted = arguments.pop("state")
    found: list[Job] = []
    for state in states:
        if wanted is not None and wanted != state:
            continue
        before = None
        while True:
            page = admin.list_jobs(state=state, limit=MAX_LIST_LIMIT, before_id=before, **arguments)
            found.extend(page)
            if len(page) < MAX_LIST_LIMIT:
                break
            before = page[-1].id
    return sorted(found, key=lambda job: -job.id)


def filter_query(filters: Mapping[str, str], **extra: Any) -> str:
    """The query string of a jobs list with these filters (and `extra`)."""
    items = {**filters, **{k: v for k, v in extra.items() if v not in (None, "")}}
    return urlencode(items)


# -- charts ------------------------------------------------------------------------------------

CHART_WIDTH, CHART_HEIGHT, CHART_GAP = 240, 48, 2


def bar_chart(
    title: str,
    values: Sequence[float],
    labels: Sequence[str],
    *,
    overlay: Sequence[float] | None = None,
    top: float | None = None,
    fmt: Callable[[int], str],
    start_label: str = "",
    top_label: str | None = None,
) -> dict[str, Any]:
    """An inline SVG bar chart as the template draws it: one bar per bucket (and an overlay
    bar over each, e.g. the failed part of what finished), heights scaled to the highest."""
    count = max(len(values), 1)
    highest = top if top is not None else max([*values, 0]) or 1
    width = CHART_WIDTH / count
    bars = []
    for i, value in enumerate(values):
        height = round(CHART_HEIGHT * value / highest, 2) if highest else 0
        part = overlay[i] if overlay is not None else 0
        part_height = round(CHART_HEIGHT * part / highest, 2) if highest else 0
        bars.append(
            {
                "x": round(i * width + CHART_GAP / 2, 2),
                "width": round(max(width - CHART_GAP, 1), 2),
                "y": round(CHART_HEIGHT - height, 2),
                "height": height,
                "part_y": round(CHART_HEIGHT - part_height, 2),
                "part_height": part_height,
                "value": value,
                "part": part,
                "title": f"{labels[i]}: {fmt(i)}",
            }
        )
    return {
        "title": title,
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "bars": bars,
        "highest": highest,
        "start_label": start_label,
        "top_label": top_label if top_label is not None else f"{highest:g}",
    }


def queue_charts(
    entry: Mapping[str, list[int]], starts: Sequence[str], bucket_seconds: float
) -> dict[str, Any]:
    """A queue's throughput (finished per bucket, the failed part in red) and failure rate."""
    finished, failed = entry["finished"], entry["failed"]
    moments = [datetime.fromisoformat(start) for start in starts]
    labels = [f"{t:%H:%M}\u2013{t + timedelta(seconds=bucket_seconds):%H:%M}" for t in moments]
    start_label = f"\u2212{round_span(bucket_seconds * len(starts))}"
    throughput = bar_chart(
        f"Jobs finished per {round_span(bucket_seconds)} (failed in red)",
        finished,
        labels,
        overlay=failed,
        start_label=start_label,
        fmt=lambda i: f"{finished[i]} finished, {failed[i]} failed",
    )
    rates = [failed[i] / finished[i] if finished[i] else 0.0 for i in range(len(finished))]
    failure_rate = bar_chart(
        f"Failure rate per {round_span(bucket_seconds)}",
        rates,
        labels,
        top=1.0,
        start_label=start_label,
        top_label="100%",
        fmt=lambda i: (
            f"{percent(rates[i])} ({failed[i]} of {finished[i]})"
            if finished[i]
            else "nothing finished"
        ),
    )
    return {"throughput": throughput, "failure_rate": failure_rate}


# -- pages -------------------------------------------------------------------------------------


def overview(request: Request) -> Response:
    admin = admin_of(request)
    line = admin.timeline(TIMELINE_WINDOW, TIMELINE_BUCKETS)
    alerts = admin.alerts(timeline=line)
    stats = admin.stats(window=TIMELINE_WINDOW)
    queues = admin.queues()
    known = {entry["queue"] for entry in queues}
    for name in line["queues"]:
        if name not in known:
            queues.append({"queue": name, "paused": False, "depth": dict.fromkeys(STATES, 0)})
    empty = dict.fromkeys(("created", "finished", "failed"), [0] * TIMELINE_BUCKETS)
    cards = []
    for entry in sorted(queues, key=lambda e: e["queue"]):
        name = entry["queue"]
        figures = stats["queues"].get(name) or {}
        cards.append(
            {
                **entry,
                "stats": figures,
                "charts": queue_charts(
                    line["queues"].get(name, empty), line["starts"], line["bucket_seconds"]
                ),
                "timeline": line["queues"].get(name, empty),
            }
        )
    return render(
        request,
        "overview.html",
        "overview",
        alerts=alerts,
        cards=cards,
        stats=stats,
        line=line,
    )


def jobs_page(request: Request) -> Response:
    admin = admin_of(request)
    params = request.query_params
    filters = job_filters(params)
    error = None
    jobs: list[Job] = []
    limit = DEFAULT_PAGE_SIZE
    try:
        limit = page_size(params.get("limit"))
        before = optional_id(params.get("before"), "before")
        jobs = admin.list_jobs(limit=limit, before_id=before, **list_arguments(filters))
    except InvalidInput as exc:
        error = str(exc)
    now = admin.now()
    return render(
        request,
        "jobs.html",
        "jobs",
        status=400 if error else 200,
        error=error,
        jobs=jobs,
        rows=job_rows(jobs, now),
        filters=filters,
        limit=limit,
        page_sizes=PAGE_SIZES,
        queue_names=queue_names(request),
        next_page=(
            "?" + filter_query(filters, limit=params.get("limit"), before=jobs[-1].id)
            if len(jobs) >= limit
            else None
        ),
        first_page="?" + filter_query(filters, limit=params.get("limit"))
        if params.get("before")
        else None,
        any_filter=bool(filters),
    )


def job_rows(jobs: Sequence[Job], now: datetime) -> list[dict[str, Any]]:
    return [
        {
            "job": job,
            "run_time": run_time(job, now),
            "fraction": _fraction(job),
            "due_in": due_in(job, now),
        }
        for job in jobs
    ]


def _fraction(job: Job) -> float | None:
    if not job.progress:
        return None
    try:
        return min(max(float(job.progress.get("fraction") or 0.0), 0.0), 1.0)
    except (TypeError, ValueError):
        return None


def job_page(request: Request) -> Response:
    admin = admin_of(request)
    job = admin.find_job(request.path_params["job_id"])
    if job is None:
        return not_found(request, f"no job {request.path_params['job_id']}")
    now = admin.now()
    budget = [TREE_BUDGET]
    tree = child_tree(admin, job, 0, budget) if job.children else []
    holder_state = None
    if job.locked_by:
        states = {worker.id: worker.state for worker in admin.workers()}
        holder_state = states.get(job.locked_by, "unknown")
    expires_in = (
        (job.lock_expires_at - now).total_seconds() if job.lock_expires_at is not None else None
    )
    return render(
        request,
        "job.html",
        "jobs",
        job=job,
        times=timing(job, now),
        expires_in=expires_in,
        holder_state=holder_state,
        fraction=_fraction(job),
        tree=tree,
        child_counts=sorted(job.child_counts.items()),
        can_retry=job.state in (FAILED, "cancelled"),
        can_cancel=job.state not in TERMINAL_STATES,
        due_in=due_in(job, now),
        # A pending job that ran before still carries its last attempt's start, run time and
        # error: the page labels them as the last attempt's.
        after_attempt=after_attempt(job),
        attempts=attempt_rows(job, now),
    )


def attempt_rows(job: Job, now: datetime) -> list[dict[str, Any]]:
    """The job's attempts, newest first: the one in progress (a running job's, which has no
    record until it ends) and then every ended one with how long it took."""
    rows = [
        {
            **record,
            "took": (record["finished_at"] - record["started_at"]).total_seconds()
            if record.get("finished_at") and record.get("started_at")
            else None,
            "running": False,
        }
        for record in reversed(job.attempts)
    ]
    recorded = {record.get("attempt") for record in job.attempts}
    if job.state == RUNNING and job.attempt not in recorded:
        current = {
            "attempt": job.attempt,
            "outcome": RUNNING,
            "worker": job.locked_by,
            "started_at": job.started_at,
            "finished_at": None,
            "took": run_time(job, now),
            "running": True,
        }
        rows.insert(0, current)
    return rows


def child_tree(admin: Admin, job: Job, depth: int, budget: list[int]) -> list[dict[str, Any]]:
    """The job's children, and theirs: TREE_WIDTH per level, TREE_DEPTH deep, TREE_BUDGET reads."""
    children = job.children or []
    nodes = []
    for child in children[:TREE_WIDTH]:
        grandchildren: list[dict[str, Any]] = []
        more = 0
        if depth + 1 < TREE_DEPTH and budget[0] > 0:
            budget[0] -= 1
            full = admin.find_job(child.id)
            if full is not None and full.children:
                grandchildren = child_tree(admin, full, depth + 1, budget)
                more = max(len(full.children) - TREE_WIDTH, 0)
        nodes.append({"job": child, "children": grandchildren, "more": more})
    return nodes


def queues_page(request: Request) -> Response:
    admin = admin_of(request)
    return render(
        request,
        "queues.html",
        "queues",
        queues=admin.queues(),
        purge_states=TERMINAL_STATES,
    )


def workers_page(request: Request) -> Response:
    admin = admin_of(request)
    error = None
    dead_after = request.query_params.get("dead_after") or "60s"
    try:
        workers = admin.workers(dead_after=dead_after)
    except InvalidInput as exc:
        error, dead_after = str(exc), "60s"
        workers = admin.workers()
    now = admin.now()
    order = {"alive": 0, "dead": 1, "stopped": 2}
    workers = sorted(workers, key=lambda w: (order.get(w.state or "", 3), w.id))
    counts = {state: sum(w.state == state for w in workers) for state in order}
    return render(
        request,
        "workers.html",
        "workers",
        status=400 if error else 200,
        error=error,
        workers=[
            {
                "worker": w,
                "silent": (now - w.heartbeat_at).total_seconds() if w.heartbeat_at else None,
            }
            for w in workers
        ],
        counts=counts,
        dead_after=dead_after,
    )


def locks_page(request: Request) -> Response:
    admin = admin_of(request)
    return render(
        request,
        "locks.html",
        "locks",
        locks=locks(admin),
        queue_names=queue_names(request),
    )


def failures_page(request: Request) -> Response:
    admin = admin_of(request)
    params = request.query_params
    window = params.get("window") or "24h"
    queue = params.get("queue") or None
    task = params.get("task") or None
    error = None
    groups = []
    try:
        if parse_duration(window, "window") <= 0:
            raise InvalidInput("the window must be longer than 0s")
        groups = admin.failures(window=window, queue=queue, task=task)
    except InvalidInput as exc:
        error = str(exc)
    return render(
        request,
        "failures.html",
        "failures",
        status=400 if error else 200,
        error=error,
        groups=groups,
        window=window,
        windows=FAILURE_WINDOWS,
        queue=queue or "",
        task=task or "",
        queue_names=queue_names(request),
    )


def review_page(request: Request) -> Response:
    admin = admin_of(request)
    params = request.query_params
    error = None
    jobs: list[Job] = []
    limit = DEFAULT_PAGE_SIZE
    queue = params.get("queue") or None
    task = params.get("task") or None
    try:
        limit = page_size(params.get("limit"))
        before = optional_id(params.get("before"), "before")
        jobs = admin.review_list(queue=queue, task=task, limit=limit, before_id=before)
    except InvalidInput as exc:
        error = str(exc)
    query = {"queue": queue, "task": task, "limit": params.get("limit")}
    return render(
        request,
        "review.html",
        "review",
        status=400 if error else 200,
        error=error,
        jobs=jobs,
        queue=queue or "",
        task=task or "",
        queue_names=queue_names(request),
        next_page=next_page(query, jobs, limit),
    )


def audit_page(request: Request) -> Response:
    admin = admin_of(request)
    params = request.query_params
    error = None
    entries = []
    limit = DEFAULT_PAGE_SIZE
    action = params.get("action") or None
    who = params.get("actor") or None
    try:
        limit = page_size(params.get("limit"))
        before = optional_id(params.get("before"), "before")
        entries = admin.audit(action=action, actor=who, limit=limit, before_id=before)
    except InvalidInput as exc:
        error = str(exc)
    query = {"action": action, "actor": who, "limit": params.get("limit")}
    return render(
        request,
        "audit.html",
        "audit",
        status=400 if error else 200,
        error=error,
        entries=[
            {"entry": entry, "params": json.dumps(entry.params, ensure_ascii=False)}
            for entry in entries
        ],
        action=action or "",
        actor=who or "",
        next_page=next_page(query, entries, limit),
    )


# -- actions -----------------------------------------------------------------------------------


async def act(
    request: Request,
    default: str,
    work: Callable[[FormData], str | Response],
) -> Response:
    """Check the form's token, do `work(form)` on the thread pool, and go back with its notice
    (or with the error that refused it, nothing changed). `work` may answer a page itself (a
    confirmation page)."""
    form = await checked_form(request)
    try:
        result = await run_in_threadpool(work, form)
    except JobNotFound as exc:
        if "job_id" in request.path_params:
            return not_found(request, str(exc))
        return back(request, form, default, str(exc), error=True)
    except InvalidInput as exc:
        return back(request, form, default, str(exc), error=True)
    if isinstance(result, Response):
        return result
    return back(request, form, default, result)


def confirm(
    request: Request,
    form: FormData,
    *,
    title: str,
    message: str,
    button: str,
    jobs: Sequence[Job] = (),
    count: int | None = None,
    danger: bool = True,
) -> Response:
    """The page that asks before a mass action: what it would touch, and a form that posts the
    same fields again with confirmed=1."""
    fields = [
        (name, value)
        for name, value in form.multi_items()
        if name not in (CSRF_FIELD, "confirmed") and isinstance(value, str)
    ]
    return render(
        request,
        "confirm.html",
        "",
        title=title,
        message=message,
        button=button,
        action=request.url.path,
        fields=fields,
        jobs=list(jobs)[:CONFIRM_SHOWN],
        more=max(len(jobs) - CONFIRM_SHOWN, 0),
        count=len(jobs) if count is None else count,
        danger=danger,
        back_to=local_path(form.get("next"), prefix(request) + "/"),
    )


def confirmed(form: Mapping[str, Any]) -> bool:
    return form.get("confirmed") == "1"


def parse_args_field(text: str | None) -> dict[str, Any] | None:
    if text is None or not text.strip():
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"malformed JSON in the arguments: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidInput('the arguments must be a JSON object, e.g. {"video_id": 7}')
    return value


async def retry_job(request: Request) -> Response:
    job_id = request.path_params["job_id"]

    def work(form: FormData) -> str:
        admin = admin_of(request)
        raw = form.get("args")
        args = parse_args_field(raw if isinstance(raw, str) else None)
        job = admin.get_job(job_id)
        if args == job.args:
            args = None  # the arguments shown, unchanged
        retried = admin.retry([job_id], args=args, actor=actor(request))
        if not retried:
            return f"job {job_id} was not retried: it is {job.state}, not failed or cancelled"
        return f"retried job {job_id}" + (" with new arguments" if args is not None else "")

    return await act(request, f"/jobs/{job_id}", work)


async def cancel_job(request: Request) -> Response:
    job_id = request.path_params["job_id"]

    def work(form: FormData) -> str:
        admin = admin_of(request)
        cancelled = admin.cancel([job_id], actor=actor(request))
        if not cancelled:
            return f"job {job_id} was not cancelled: it had already ended"
        return f"cancelled job {job_id}"

    return await act(request, f"/jobs/{job_id}", work)


async def resolve_job(request: Request) -> Response:
    job_id = request.path_params["job_id"]

    def work(form: FormData) -> str:
        note = text_field(form, "note")
        if not note:
            raise InvalidInput("say what was done: a review needs a note")
        resolved = admin_of(request).resolve([job_id], note, actor=actor(request))
        if not resolved:
            return f"job {job_id} was not awaiting review"
        return f"resolved the review of job {job_id}"

    return await act(request, f"/jobs/{job_id}", work)


def _selection_or_filter(
    request: Request,
    form: FormData,
    *,
    verb: str,
    past: str,
    states: Sequence[str],
    skipped_why: str,
    run: Callable[[list[int], bool], list[Job]],
) -> str | Response:
    """A jobs-list action on the selected `ids`, or on every job matching the filter fields
    (`all_matching=1`, after a confirmation page)."""
    admin = admin_of(request)
    if form.get("all_matching") == "1":
        filters = job_filters(form)
        ids = [job.id for job in matching(admin, filters, states)]
        if not confirmed(form):
            targets = run(ids, True) if ids else []
            described = ", ".join(f"{k} {v}" for k, v in filters.items()) or "no filter"
            return confirm(
                request,
                form,
                title=f"{verb.capitalize()} every matching job?",
                message=f"This will {verb} {plural(len(targets), 'job')} matching "
                f"the filter ({described}).",
                button=f"{verb.capitalize()} {plural(len(targets), 'job')}",
                jobs=targets,
            )
        return outcome(past, run(ids, False) if ids else [])
    ids = parse_ids(form.getlist("ids"))
    if not ids:
        raise InvalidInput(f"select the jobs to {verb} first")
    return outcome(past, run(ids, False), ids, skipped_why)


async def retry_jobs(request: Request) -> Response:
    def work(form: FormData) -> str | Response:
        admin = admin_of(request)
        return _selection_or_filter(
            request,
            form,
            verb="retry",
            past="retried",
            states=(FAILED,) if form.get("state") != "cancelled" else ("cancelled",),
            skipped_why="not failed or cancelled",
            run=lambda ids, dry: admin.retry(ids, dry_run=dry, actor=actor(request)),
        )

    return await act(request, "/jobs", work)


async def cancel_jobs(request: Request) -> Response:
    def work(form: FormData) -> str | Response:
        admin = admin_of(request)
        return _selection_or_filter(
            request,
            form,
            verb="cancel",
            past="cancelled",
            states=("pending", RUNNING, "waiting"),
            skipped_why="already ended",
            run=lambda ids, dry: admin.cancel(ids, dry_run=dry, actor=actor(request)),
        )

    return await act(request, "/jobs", work)


async def purge_jobs(request: Request) -> Response:
    def work(form: FormData) -> str | Response:
        admin = admin_of(request)
        state = text_field(form, "state") or ""
        older_than = text_field(form, "older_than") or ""
        queue = text_field(form, "queue")
        if not older_than:
            raise InvalidInput("say how old: e.g. 7d")
        count = admin.purge(state, older_than, queue, dry_run=True)
        where = f" of queue {queue}" if queue else ""
        if not confirmed(form):
            return confirm(
                request,
                form,
                title="Delete old jobs?",
                message=f"This will delete {plural(count, f'{state} job')}{where} that finished "
                f"over {older_than} ago. Deleted jobs cannot be brought back.",
                button=f"Delete {plural(count, 'job')}",
                count=count,
            )
        purged = admin.purge(state, older_than, queue, actor=actor(request))
        return f"purged {plural(purged, f'{state} job')}{where} finished over {older_than} ago"

    return await act(request, "/queues", work)


async def set_paused(request: Request, paused: bool) -> Response:
    queue = request.path_params["queue"]

    def work(form: FormData) -> str:
        admin = admin_of(request)
        if paused:
            admin.pause(queue, actor=actor(request))
            return f"paused queue {queue}: workers claim nothing from it (jobs in hand run on)"
        admin.resume(queue, actor=actor(request))
        return f"resumed queue {queue}"

    return await act(request, "/queues", work)


async def pause_queue(request: Request) -> Response:
    return await set_paused(request, True)


async def resume_queue(request: Request) -> Response:
    return await set_paused(request, False)


async def expire_stuck(request: Request) -> Response:
    def work(form: FormData) -> str | Response:
        admin = admin_of(request)
        older_than = text_field(form, "older_than") or ""
        if not older_than:
            raise InvalidInput("say how long a job must have run: e.g. 15m")
        queue = text_field(form, "queue")
        fail = form.get("fail") == "1"
        then = "failed" if fail else "retried"
        if not confirmed(form):
            jobs = admin.expire_stuck(older_than, queue, fail=fail, dry_run=True)
            return confirm(
                request,
                form,
                title="Expire stuck jobs?",
                message=f"This will force {plural(len(jobs), 'job')} running over {older_than}"
                f"{f' in queue {queue}' if queue else ''} out of running: each is {then}, and "
                "the worker still holding one has its result refused.",
                button=f"Expire {plural(len(jobs), 'job')}",
                jobs=jobs,
            )
        expired = admin.expire_stuck(older_than, queue, fail=fail, actor=actor(request))
        return outcome(f"expired ({then})", expired)

    return await act(request, "/locks", work)


async def clear_locks(request: Request) -> Response:
    def work(form: FormData) -> str | Response:
        admin = admin_of(request)
        dead_for = text_field(form, "dead_for") or "60s"
        if not confirmed(form):
            jobs = admin.clear_locks(dead_for, dry_run=True)
            return confirm(
                request,
                form,
                title="Release dead workers' locks?",
                message=f"This will release {plural(len(jobs), 'lock')} held by workers silent "
                f"for {dead_for} or stopped, or whose lease ran out: each job goes back to "
                "its queue as a lost attempt.",
                button=f"Release {plural(len(jobs), 'lock')}",
                jobs=jobs,
            )
        released = admin.clear_locks(dead_for, actor=actor(request))
        return outcome("released", released)

    return await act(request, "/locks", work)


async def resolve_reviews(request: Request) -> Response:
    def work(form: FormData) -> str:
        ids = parse_ids(form.getlist("ids"))
        if not ids:
            raise InvalidInput("select the jobs to resolve first")
        note = text_field(form, "note")
        if not note:
            raise InvalidInput("say what was done: a review needs a note")
        resolved = admin_of(request).resolve(ids, note, actor=actor(request))
        return outcome("resolved", resolved, ids, "not awaiting review")

    return await act(request, "/review", work)


def routes() -> list[BaseRoute]:
    return [
        Route("/", overview, methods=["GET"]),
        Route("/jobs", jobs_page, methods=["GET"]),
        Route("/jobs/retry", retry_jobs, methods=["POST"]),
        Route("/jobs/cancel", cancel_jobs, methods=["POST"]),
        Route("/jobs/purge", purge_jobs, methods=["POST"]),
        Route("/jobs/{job_id:int}", job_page, methods=["GET"]),
        Route("/jobs/{job_id:int}/retry", retry_job, methods=["POST"]),
        Route("/jobs/{job_id:int}/cancel", cancel_job, methods=["POST"]),
        Route("/jobs/{job_id:int}/resolve", resolve_job, methods=["POST"]),
        Route("/queues", queues_page, methods=["GET"]),
        Route("/queues/{queue}/pause", pause_queue, methods=["POST"]),
        Route("/queues/{queue}/resume", resume_queue, methods=["POST"]),
        Route("/workers", workers_page, methods=["GET"]),
        Route("/locks", locks_page, methods=["GET"]),
        Route("/locks/expire-stuck", expire_stuck, methods=["POST"]),
        Route("/locks/clear", clear_locks, methods=["POST"]),
        Route("/failures", failures_page, methods=["GET"]),
        Route("/review", review_page, methods=["GET"]),
        Route("/review/resolve", resolve_reviews, methods=["POST"]),
        Route("/audit", audit_page, methods=["GET"]),
    ]
