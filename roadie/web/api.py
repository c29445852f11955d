"""The JSON API under /api/, its OpenAPI document, /metrics and /healthz.

One table, `OPERATIONS`, lists every route: its method and path, the function that answers it, and
its OpenAPI description (query parameters, body, response schema). `routes()` and the document at
/api/openapi.json are both made from it, and the query parameters and JSON bodies are checked
against the same schemas: a parameter or field not documented is refused (400).

Each action passes the dashboard user's name to the admin layer, which writes it to the audit log.
A POST must be `Content-Type: application/json` (else 415): with the middleware's refusal of
cross-site requests, that is the API's CSRF defence, since a cross-site HTML form cannot send it
and a cross-site script may not without a CORS preflight, which is never granted.

Errors are `{"error": "one line"}`: 400 for bad input, 404 for an unknown job, 503 when the
database is unreachable.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from roadie import report
from roadie.admin import DEFAULT_DEAD_AFTER, MAX_LIST_LIMIT, Admin
from roadie.config import parse_duration
from roadie.errors import DatabaseUnavailable, InvalidInput, JobNotFound, RoadieError
from roadie.jobs import FAILURES, OUTCOMES, STATES, TERMINAL_STATES
from roadie.metrics import CONTENT_TYPE, metrics_text
from roadie.web.auth import current_user

log = logging.getLogger("roadie.web")

MAX_IDS = MAX_LIST_LIMIT  # job ids in one bulk action
MIN_BODY_LIMIT = 1024 * 1024  # bytes; at least twice the app's max_args_bytes is allowed
JSON = "application/json"


# -- what every route shares -------------------------------------------------------------------


class Params:
    """The query parameters or JSON body fields of one request, checked against their schemas:
    unknown names and wrong types are refused (InvalidInput, so 400)."""

    def __init__(self, values: Mapping[str, Any], schemas: Mapping[str, dict[str, Any]]) -> None:
        self.values = dict(values)
        self.schemas = schemas

    @classmethod
    def from_query(cls, request: Request, parameters: Sequence[dict[str, Any]]) -> Params:
        schemas = {p["name"]: p["schema"] for p in parameters}
        values: dict[str, Any] = {}
        for name, text in request.query_params.multi_items():
            if name not in schemas:
                raise InvalidInput(f"unknown query parameter {name!r}{_known(schemas)}")
            if name in values:
                raise InvalidInput(f"query parameter {name!r} given more than once")
            values[name] = _from_text(name, text, schemas[name]) if text != "" else None
        return cls({k: v for k, v in values.items() if v is not None}, schemas)

    @classmethod
    def from_body(cls, data: Any, schema: dict[str, Any]) -> Params:
        if not isinstance(data, dict):
            raise InvalidInput("the body must be a JSON object")
        schemas = schema.get("properties", {})
        for name, value in data.items():
            if name not in schemas:
                raise InvalidInput(f"unknown field {name!r} in the body{_known(schemas)}")
            if not _has_type(value, schemas[name]):
                raise InvalidInput(f"bad {name!r} in the body: must be {_describe(schemas[name])}")
        missing = [name for name in schema.get("required", ()) if name not in data]
        if missing:
            raise InvalidInput(f"the body needs {missing[0]!r}")
        return cls(data, schemas)

    def get(self, name: str, default: Any = None) -> Any:
        assert name in self.schemas, f"{name!r} is not documented"
        value = self.values.get(name)
        return default if value is None else value

    def given(self, name: str) -> bool:
        return self.values.get(name) is not None


def _known(schemas: Mapping[str, Any]) -> str:
    return f": use {', '.join(schemas)}" if schemas else ": none is taken"


def _from_text(name: str, text: str, schema: dict[str, Any]) -> Any:
    kind = schema.get("type")
    if kind == "integer":
        if not re.fullmatch(r"-?\d{1,19}", text):
            raise InvalidInput(f"bad {name} {text!r}: must be an integer")
        return int(text)
    if kind == "boolean":
        if text.lower() in ("true", "1", "yes", "on"):
            return True
        if text.lower() in ("false", "0", "no", "off"):
            return False
        raise InvalidInput(f"bad {name} {text!r}: use true or false")
    if "enum" in schema and text not in schema["enum"]:
        raise InvalidInput(f"bad {name} {text!r}: use one of {', '.join(schema['enum'])}")
    return text


def _has_type(value: Any, schema: Mapping[str, Any]) -> bool:
    kinds = schema.get("type")
    if kinds is None:
        return True
    for kind in [kinds] if isinstance(kinds, str) else kinds:
        if (
            (kind == "null" and value is None)
            or (kind == "boolean" and isinstance(value, bool))
            or (kind == "integer" and isinstance(value, int) and not isinstance(value, bool))
            or (kind == "number" and isinstance(value, int | float) and not isinstance(value, bool))
            or (kind == "string" and isinstance(value, str))
            or (kind == "object" and isinstance(value, dict))
            or (
                kind == "array"
                and isinstance(value, list)
                and all(_has_type(item, schema.get("items", {})) for item in value)
            )
        ):
            return True
    return False


def _describe(schema: Mapping[str, Any]) -> str:
    kinds = schema.get("type")
    words = {
        "null": "null",
        "boolean": "true or false",
        "integer": "an integer",
        "number": "a number",
        "string": "text",
        "object": "a JSON object",
    }
    said = []
    for kind in [kinds] if isinstance(kinds, str) else kinds or []:
        if kind == "array":
            item = _describe(schema.get("items", {}))
            said.append(f"an array of {item.removeprefix('an ').removeprefix('a ')}s")
        else:
            said.append(words[kind])
    return " or ".join(said) or "anything"


async def _json_body(request: Request) -> Any:
    """The request's JSON body ({} when empty), refused unless sent as application/json."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != JSON:
        raise HTTPException(415, "send the body as Content-Type: application/json")
    admin = _admin(request)
    limit = max(MIN_BODY_LIMIT, 2 * admin.max_args_bytes + 64 * 1024)
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise HTTPException(413, f"the body is over {limit} bytes")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise HTTPException(413, f"the body is over {limit} bytes")
    if not data.strip():
        return {}
    try:
        return json.loads(bytes(data), parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"malformed JSON body: {exc}") from None


def _no_constant(name: str) -> Any:
    raise InvalidInput(f"malformed JSON body: {name} is not JSON")


def _admin(request: Request) -> Admin:
    return request.app.state.roadie.admin  # type: ignore[no-any-return]


def _actor(request: Request) -> str:
    return current_user(request).name


def _job_id(request: Request) -> int:
    return int(request.path_params["job_id"])


def _ids(body: Params) -> list[int]:
    ids = list(dict.fromkeys(body.get("ids", [])))
    if not ids:
        raise InvalidInput("give the ids of the jobs in 'ids'")
    if len(ids) > MAX_IDS:
        raise InvalidInput(f"at most {MAX_IDS} ids at once; got {len(ids)}")
    return ids


def _duration(body: Params, name: str, default: Any = None) -> Any:
    """A duration field as given (text or seconds), checked now so the error names the field."""
    value = body.get(name, default)
    if value is not None:
        parse_duration(value, name)
    return value


def _jobs(jobs: Sequence[Any]) -> list[dict[str, Any]]:
    return [job.to_dict() for job in jobs]


# -- reading -----------------------------------------------------------------------------------


def list_jobs(request: Request, q: Params) -> Any:
    return _jobs(
        _admin(request).list_jobs(
            state=q.get("state"),
            queue=q.get("queue"),
            task=q.get("task"),
            limit=q.get("limit", 100),
            parent_id=q.get("parent"),
            since=q.get("since"),
            until=q.get("until"),
            error=q.get("error"),
            needs_review=q.get("review"),
            before_id=q.get("before"),
        )
    )


def show_job(request: Request, q: Params) -> Any:
    admin = _admin(request)
    job = admin.get_job(_job_id(request))
    return {**job.to_dict(), "timing": report.timing(job, admin.now())}


def list_queues(request: Request, q: Params) -> Any:
    return _admin(request).queues()


def list_workers(request: Request, q: Params) -> Any:
    workers = _admin(request).workers(dead_after=q.get("dead_after", DEFAULT_DEAD_AFTER))
    return [worker.to_dict() for worker in workers]


def list_locks(request: Request, q: Params) -> Any:
    return report.locks(_admin(request), dead_after=q.get("dead_after", DEFAULT_DEAD_AFTER))


def stats(request: Request, q: Params) -> Any:
    return _admin(request).stats(queue=q.get("queue"), window=q.get("window", "15m"))


def failures(request: Request, q: Params) -> Any:
    groups = _admin(request).failures(
        window=q.get("window", "24h"), queue=q.get("queue"), task=q.get("task")
    )
    return [group.to_dict() for group in groups]


def review_list(request: Request, q: Params) -> Any:
    return _jobs(
        _admin(request).review_list(
            queue=q.get("queue"),
            task=q.get("task"),
            limit=q.get("limit", 100),
            before_id=q.get("before"),
        )
    )


def audit(request: Request, q: Params) -> Any:
    entries = _admin(request).audit(
        action=q.get("action"),
        actor=q.get("actor"),
        limit=q.get("limit", 100),
        before_id=q.get("before"),
    )
    return [entry.to_dict() for entry in entries]


def openapi(request: Request, q: Params) -> Any:
    return {**openapi_document(), "servers": [{"url": request.scope.get("root_path") or "/"}]}


def metrics(request: Request, q: Params) -> Response:
    text = metrics_text(_admin(request), request.app.state.metrics_window)
    return Response(text, media_type=CONTENT_TYPE)


def healthz(request: Request, q: Params) -> Response:
    """Whether the database answers, and how many workers are alive; never any job's data. The
    reason the database is unreachable is told only to a known user (it may name hosts)."""
    try:
        workers = _admin(request).workers()
    except RoadieError as exc:
        log.warning("health check: database unreachable: %s", exc)
        known = request.app.state.guard.user_for(request.headers) is not None
        reason = " ".join(str(exc).split()) if known else "see the dashboard's log"
        return JSONResponse({"database": f"unreachable: {reason}"}, status_code=503)
    alive = sum(worker.state == "alive" for worker in workers)
    return JSONResponse({"database": "ok", "workers_alive": alive})


# -- acting ------------------------------------------------------------------------------------


def retry_job(request: Request, body: Params) -> Any:
    job_id = _job_id(request)
    dry_run = body.get("dry_run", False)
    jobs = _admin(request).retry(
        [job_id], args=body.get("args"), dry_run=dry_run, actor=_actor(request)
    )
    return report.action_report("retry", jobs, dry_run, [job_id])


def cancel_job(request: Request, body: Params) -> Any:
    job_id = _job_id(request)
    dry_run = body.get("dry_run", False)
    jobs = _admin(request).cancel([job_id], dry_run=dry_run, actor=_actor(request))
    return report.action_report("cancel", jobs, dry_run, [job_id])


def retry_jobs(request: Request, body: Params) -> Any:
    dry_run = body.get("dry_run", False)
    admin = _admin(request)
    if body.given("ids") and body.get("failed"):
        raise InvalidInput("give 'ids' or \"failed\": true, not both")
    if body.get("failed"):
        if body.given("args"):
            raise InvalidInput("'args' goes with 'ids', not with \"failed\": true")
        jobs = admin.retry_failed(
            body.get("queue"), body.get("task"), dry_run=dry_run, actor=_actor(request)
        )
        return report.action_report("retry", jobs, dry_run)
    if not body.given("ids"):
        raise InvalidInput("give the ids of the jobs to retry in 'ids', or \"failed\": true")
    if body.given("queue") or body.given("task"):
        raise InvalidInput("'queue' and 'task' go with \"failed\": true, not with 'ids'")
    ids = _ids(body)
    jobs = admin.retry(ids, args=body.get("args"), dry_run=dry_run, actor=_actor(request))
    return report.action_report("retry", jobs, dry_run, ids)


def cancel_jobs(request: Request, body: Params) -> Any:
    ids = _ids(body)
    dry_run = body.get("dry_run", False)
    jobs = _admin(request).cancel(ids, dry_run=dry_run, actor=_actor(request))
    return report.action_report("cancel", jobs, dry_run, ids)


def purge_jobs(request: Request, body: Params) -> Any:
    dry_run = body.get("dry_run", False)
    state, queue = body.get("state"), body.get("queue")
    older_than = _duration(body, "older_than")
    purged = _admin(request).purge(state, older_than, queue, dry_run=dry_run, actor=_actor(request))
    return {
        "action": "purge",
        "dry_run": dry_run,
        "count": purged,
        "state": state,
        "older_than": parse_duration(older_than, "older_than"),
        "queue": queue,
    }


def pause_queue(request: Request, body: Params) -> Any:
    return _set_paused(request, True)


def resume_queue(request: Request, body: Params) -> Any:
    return _set_paused(request, False)


def _set_paused(request: Request, paused: bool) -> Any:
    admin = _admin(request)
    name = request.path_params["queue"]
    if paused:
        admin.pause(name, actor=_actor(request))
    else:
        admin.resume(name, actor=_actor(request))
    for entry in admin.queues():
        if entry["queue"] == name:
            return entry
    return {"queue": name, "paused": paused, "depth": {state: 0 for state in STATES}}


def resolve_review(request: Request, body: Params) -> Any:
    ids = _ids(body)
    jobs = _admin(request).resolve(ids, body.get("note"), actor=_actor(request))
    return report.action_report("resolve", jobs, False, ids)


def expire_stuck(request: Request, body: Params) -> Any:
    dry_run = body.get("dry_run", False)
    jobs = _admin(request).expire_stuck(
        _duration(body, "older_than"),
        body.get("queue"),
        fail=body.get("fail", False),
        dry_run=dry_run,
        actor=_actor(request),
    )
    return report.action_report("expire", jobs, dry_run)


def clear_locks(request: Request, body: Params) -> Any:
    dry_run = body.get("dry_run", False)
    jobs = _admin(request).clear_locks(
        _duration(body, "dead_for", DEFAULT_DEAD_AFTER), dry_run=dry_run, actor=_actor(request)
    )
    return report.action_report("release", jobs, dry_run)


# -- the schemas -------------------------------------------------------------------------------


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _or_null(kind: str, **more: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **more}


def _array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def _object(properties: dict[str, Any], required: Sequence[str] | None = None) -> dict[str, Any]:
    """An object whose listed properties are all required unless `required` says which are."""
    return {
        "type": "object",
        "required": list(properties if required is None else required),
        "properties": properties,
    }


def _body(properties: dict[str, Any], required: Sequence[str] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": list(required),
        "properties": properties,
    }


TIME = {"type": "string", "format": "date-time"}
TIME_OR_NULL = _or_null("string", format="date-time")
SECONDS_OR_NULL = _or_null("number", description="seconds")
DURATION = {
    "type": ["string", "number"],
    "description": 'a duration: "500ms", "30s", "15m", "2h", "7d", or a number of seconds',
    "examples": ["15m", 3600],
}
MOMENT = {
    "type": "string",
    "description": "ISO 8601 with a time zone, or a duration meaning that long ago (1h)",
    "examples": ["1h", "2026-11-28T09:00:00Z"],
}
DRY_RUN = {
    "type": "boolean",
    "default": False,
    "description": "say what would change; change nothing",
}
IDS = {**_array({"type": "integer"}), "minItems": 1, "maxItems": MAX_IDS}
DEPTH = _object({state: {"type": "integer", "minimum": 0} for state in STATES})

SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": _object({"error": {"type": "string", "description": "one line"}}),
    "Attempt": _object(
        {
            "attempt": {"type": "integer"},
            "worker": _or_null("string"),
            "started_at": TIME_OR_NULL,
            "finished_at": TIME_OR_NULL,
            "outcome": {"type": "string", "enum": list(OUTCOMES)},
            "error": _or_null("string"),
            "traceback": _or_null("string"),
        },
        required=["attempt", "outcome"],
    ),
    "Job": _object(
        {
            "id": {"type": "integer"},
            "queue": {"type": "string"},
            "task": {"type": "string"},
            "args": {"type": "object"},
            "priority": {"type": "integer"},
            "state": {"type": "string", "enum": list(STATES)},
            "attempt": {"type": "integer"},
            "max_attempts": {"type": "integer"},
            "created_at": TIME,
            "run_at": TIME,
            "started_at": TIME_OR_NULL,
            "finished_at": TIME_OR_NULL,
            "result": {"description": "what the task returned (any JSON)"},
            "error": _or_null("string"),
            "failure": {"type": ["string", "null"], "enum": [*FAILURES, None]},
            "progress": _or_null("object"),
            "parent_id": _or_null("integer"),
            "locked_by": _or_null("string"),
            "lock_expires_at": TIME_OR_NULL,
            "idempotency_key": _or_null("string"),
            "timeout": SECONDS_OR_NULL,
            "needs_review": {"type": "boolean"},
            "attempts": _array(_ref("Attempt")),
            "callback_key": _or_null("string"),
            "review_note": _or_null("string"),
            "reviewed_at": TIME_OR_NULL,
            "args_history": _array(
                _object(
                    {
                        "attempt": {"type": "integer"},
                        "replaced_at": TIME,
                        "args": {"type": "object"},
                    }
                )
            ),
            "stuck": _or_null("string", description="why a running job looks stuck"),
        },
        required=["id", "queue", "task", "args", "state", "attempt", "max_attempts", "created_at"],
    ),
    "JobDetail": {
        "allOf": [
            _ref("Job"),
            _object(
                {
                    "children": _array(_ref("Job")),
                    "timing": _object(
                        {
                            "waited": SECONDS_OR_NULL,
                            "run_time": SECONDS_OR_NULL,
                            "lock_age": SECONDS_OR_NULL,
                        }
                    ),
                }
            ),
        ]
    },
    "ActionReport": _object(
        {
            "action": {
                "type": "string",
                "enum": ["retry", "cancel", "expire", "release", "resolve"],
            },
            "dry_run": {"type": "boolean"},
            "count": {"type": "integer", "description": "jobs touched (or that would be)"},
            "jobs": _array(
                _object(
                    {
                        "id": {"type": "integer"},
                        "queue": {"type": "string"},
                        "task": {"type": "string"},
                        "attempt": {"type": "integer"},
                        "worker": _or_null("string"),
                    }
                )
            ),
            "skipped": {
                **_array({"type": "integer"}),
                "description": "ids given that the action left alone",
            },
        }
    ),
    "PurgeReport": _object(
        {
            "action": {"const": "purge"},
            "dry_run": {"type": "boolean"},
            "count": {"type": "integer", "description": "jobs deleted (or that would be)"},
            "state": {"type": "string", "enum": list(TERMINAL_STATES)},
            "older_than": {"type": "number", "description": "seconds"},
            "queue": _or_null("string"),
        }
    ),
    "Queue": _object({"queue": {"type": "string"}, "paused": {"type": "boolean"}, "depth": DEPTH}),
    "Worker": _object(
        {
            "id": {"type": "string"},
            "host": {"type": "string"},
            "pid": {"type": "integer"},
            "queues": _array({"type": "string"}),
            "concurrency": {"type": "integer"},
            "started_at": TIME_OR_NULL,
            "heartbeat_at": TIME_OR_NULL,
            "stopped_at": TIME_OR_NULL,
            "jobs": {"type": "integer", "description": "running jobs it holds"},
            "state": {"type": "string", "enum": ["alive", "dead", "stopped"]},
        }
    ),
    "Lock": _object(
        {
            "job_id": {"type": "integer"},
            "task": {"type": "string"},
            "queue": {"type": "string"},
            "attempt": {"type": "integer"},
            "worker": _or_null("string"),
            "started_at": TIME_OR_NULL,
            "lock_age": SECONDS_OR_NULL,
            "expires_at": TIME_OR_NULL,
            "expires_in": _or_null("number", description="seconds; negative once run out"),
            "holder": {"type": "string", "enum": ["alive", "dead", "stopped", "unknown"]},
            "stuck": _or_null("string"),
        }
    ),
    "QueueStats": _object(
        {
            "depth": DEPTH,
            "duration": _object({p: SECONDS_OR_NULL for p in ("p50", "p95", "p99")}),
            "finished": {"type": "integer"},
            "failed": {"type": "integer"},
            "throughput": {"type": "number", "description": "jobs finished per second"},
            "failure_rate": _or_null("number"),
            "duration_sum": {"type": "number"},
            "retries": {"type": "integer"},
            "retries_total": {"type": "integer", "description": "stored and pruned jobs"},
            "finished_total": {
                **_object({o: {"type": "integer"} for o in ("complete", "failed", "cancelled")}),
                "description": "all-time: stored jobs in each end state plus pruned ones",
            },
            "oldest_lock_age": SECONDS_OR_NULL,
            "oldest_pending_age": SECONDS_OR_NULL,
            "review": {"type": "integer"},
            "stuck": {"type": "integer"},
        }
    ),
    "Stats": _object(
        {
            "at": TIME,
            "window": {"type": "number", "description": "seconds"},
            "queues": {"type": "object", "additionalProperties": _ref("QueueStats")},
            "total": _ref("QueueStats"),
            "workers": _object({s: {"type": "integer"} for s in ("alive", "dead", "stopped")}),
        }
    ),
    "FailureGroup": _object(
        {
            "task": {"type": "string"},
            "signature": {"type": "string"},
            "attempts": {"type": "integer"},
            "jobs": {"type": "integer"},
            "failed_jobs": {"type": "integer"},
            "first_seen": TIME,
            "last_seen": TIME,
            "example_job": {"type": "integer"},
            "example_error": {"type": "string"},
        }
    ),
    "AuditEntry": _object(
        {
            "id": {"type": "integer"},
            "at": TIME,
            "actor": {"type": "string"},
            "action": {"type": "string"},
            "params": {"type": "object"},
            "job_ids": _array({"type": "integer"}),
            "count": {"type": "integer"},
        }
    ),
    "Health": _object(
        {"database": {"type": "string"}, "workers_alive": {"type": "integer"}},
        required=["database"],
    ),
}


def _query(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    parameter = {"name": name, "in": "query", "required": False, "schema": schema}
    return {**parameter, "description": description} if description else parameter


LIMIT = _query(
    "limit",
    {"type": "integer", "minimum": 1, "maximum": MAX_LIST_LIMIT, "default": 100},
    "at most this many",
)
BEFORE = _query("before", {"type": "integer", "minimum": 1}, "the next page: ids below this one")
QUEUE = _query("queue", {"type": "string"}, "only this queue")
TASK = _query("task", {"type": "string"}, "only this task")
DEAD_AFTER = _query(
    "dead_after",
    {**DURATION, "type": "string", "default": "60s"},
    "a worker silent this long is dead",
)


# -- the table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    """One route of the API and its OpenAPI description."""

    method: str
    path: str  # a Starlette path: {job_id:int} is an integer path parameter
    handler: Callable[[Request, Params], Any]
    summary: str
    response: dict[str, Any]  # the schema of a 200 answer's body
    query: tuple[dict[str, Any], ...] = ()
    body: dict[str, Any] | None = None  # the JSON body's schema (POST)
    media_type: str = JSON  # of the 200 answer
    open: bool = False  # answered without credentials
    not_found: bool = False  # may answer 404 (a job id that names no job)


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "GET", "/api/jobs", list_jobs, "Jobs matching every filter given, newest first",
        _array(_ref("Job")),
        query=(
            _query("state", {"type": "string", "enum": list(STATES)}),
            QUEUE,
            TASK,
            _query("parent", {"type": "integer", "minimum": 1}, "children of this job"),
            _query("since", MOMENT, "created at or after"),
            _query("until", MOMENT, "created before"),
            _query("error", {"type": "string"}, "text in the last error, any case"),
            _query("review", {"type": "boolean"}, "true: only failed jobs awaiting review"),
            BEFORE,
            LIMIT,
        ),
    ),
    Operation(
        "GET", "/api/jobs/{job_id:int}", show_job,
        "One job with its attempts, children and timing", _ref("JobDetail"), not_found=True,
    ),
    Operation(
        "POST", "/api/jobs/{job_id:int}/retry", retry_job,
        "Retry a failed or cancelled job, with new arguments if given", _ref("ActionReport"),
        body=_body({"args": {"type": "object", "description": "new arguments"}, "dry_run": DRY_RUN}),
        not_found=True,
    ),
    Operation(
        "POST", "/api/jobs/{job_id:int}/cancel", cancel_job,
        "Cancel a job that has not ended, with what waits under it", _ref("ActionReport"),
        body=_body({"dry_run": DRY_RUN}), not_found=True,
    ),
    Operation(
        "POST", "/api/jobs/retry", retry_jobs,
        'Retry jobs by id, or every failed job ("failed": true, of a queue, of a task)',
        _ref("ActionReport"),
        body=_body(
            {
                "ids": IDS,
                "args": {"type": "object", "description": "new arguments (with ids)"},
                "failed": {"type": "boolean", "description": "every failed job"},
                "queue": {"type": "string", "description": "with failed: only this queue"},
                "task": {"type": "string", "description": "with failed: only this task"},
                "dry_run": DRY_RUN,
            }
        ),
        not_found=True,
    ),
    Operation(
        "POST", "/api/jobs/cancel", cancel_jobs, "Cancel jobs by id", _ref("ActionReport"),
        body=_body({"ids": IDS, "dry_run": DRY_RUN}, required=["ids"]), not_found=True,
    ),
    Operation(
        "POST", "/api/jobs/purge", purge_jobs,
        "Delete ended jobs in a state that finished more than older_than ago", _ref("PurgeReport"),
        body=_body(
            {
                "state": {"type": "string", "enum": list(TERMINAL_STATES)},
                "older_than": DURATION,
                "queue": {"type": "string"},
                "dry_run": DRY_RUN,
            },
            required=["state", "older_than"],
        ),
    ),
    Operation("GET", "/api/queues", list_queues, "Queues with depth per state", _array(_ref("Queue"))),
    Operation(
        "POST", "/api/queues/{queue}/pause", pause_queue,
        "Stop workers claiming the queue's jobs (jobs in hand run on)", _ref("Queue"),
        body=_body({}),
    ),
    Operation(
        "POST", "/api/queues/{queue}/resume", resume_queue, "Let workers claim the queue's jobs",
        _ref("Queue"), body=_body({}),
    ),
    Operation(
        "GET", "/api/workers", list_workers, "Registered workers: alive, dead or stopped",
        _array(_ref("Worker")), query=(DEAD_AFTER,),
    ),
    Operation(
        "GET", "/api/locks", list_locks, "Every running job's lock, oldest first",
        _array(_ref("Lock")), query=(DEAD_AFTER,),
    ),
    Operation(
        "GET", "/api/stats", stats, "Depth, throughput, durations, failure rate, lock ages",
        _ref("Stats"),
        query=(QUEUE, _query("window", {**DURATION, "type": "string", "default": "15m"})),
    ),
    Operation(
        "GET", "/api/failures", failures, "Failed attempts grouped by task and error signature",
        _array(_ref("FailureGroup")),
        query=(_query("window", {**DURATION, "type": "string", "default": "24h"}), QUEUE, TASK),
    ),
    Operation(
        "GET", "/api/review", review_list, "Failed jobs awaiting an administrator, newest first",
        _array(_ref("Job")), query=(QUEUE, TASK, LIMIT, BEFORE),
    ),
    Operation(
        "POST", "/api/review/resolve", resolve_review,
        "Acknowledge failed jobs: they stay failed and leave the review list",
        _ref("ActionReport"),
        body=_body({"ids": IDS, "note": {"type": "string"}}, required=["ids", "note"]),
        not_found=True,
    ),
    Operation(
        "GET", "/api/audit", audit, "Administrative actions, newest first",
        _array(_ref("AuditEntry")),
        query=(
            _query("action", {"type": "string"}, "e.g. jobs.retry"),
            _query("actor", {"type": "string"}),
            LIMIT,
            BEFORE,
        ),
    ),
    Operation(
        "POST", "/api/admin/expire-stuck", expire_stuck,
        "Force jobs running longer than older_than out of running: retried, or failed with fail",
        _ref("ActionReport"),
        body=_body(
            {
                "older_than": DURATION,
                "queue": {"type": "string"},
                "fail": {"type": "boolean", "default": False},
                "dry_run": DRY_RUN,
            },
            required=["older_than"],
        ),
    ),
    Operation(
        "POST", "/api/admin/clear-locks", clear_locks,
        "Release locks of workers dead for dead_for (or whose lease ran out)",
        _ref("ActionReport"),
        body=_body({"dead_for": {**DURATION, "default": "60s"}, "dry_run": DRY_RUN}),
    ),
    Operation(
        "GET", "/api/openapi.json", openapi, "This document",
        {"type": "object", "description": "an OpenAPI 3.1 document"},
    ),
    Operation(
        "GET", "/metrics", metrics, "Prometheus metrics (text exposition format)",
        {"type": "string"}, media_type=CONTENT_TYPE,
    ),
    Operation(
        "GET", "/healthz", healthz, "Whether the database answers; workers alive (no credentials)",
        _ref("Health"), open=True,
    ),
)  # fmt: skip


# -- routes ------------------------------------------------------------------------------------


def _endpoint(op: Operation) -> Callable[[Request], Any]:
    def answer(result: Any) -> Response:
        return result if isinstance(result, Response) else JSONResponse(result)

    if op.body is None:

        def read(request: Request) -> Response:  # sync: Starlette runs it on its thread pool
            return answer(op.handler(request, Params.from_query(request, op.query)))

        read.__name__ = op.handler.__name__
        return read

    schema = op.body

    async def act(request: Request) -> Response:
        Params.from_query(request, ())
        body = Params.from_body(await _json_body(request), schema)
        return answer(await run_in_threadpool(op.handler, request, body))

    act.__name__ = op.handler.__name__
    return act


def routes() -> list[BaseRoute]:
    """Every route of `OPERATIONS`, named "api.<function>" (e.g. url_for("api.show_job"))."""
    return [
        Route(op.path, _endpoint(op), methods=[op.method], name=f"api.{op.handler.__name__}")
        for op in OPERATIONS
    ]


# -- the OpenAPI document ----------------------------------------------------------------------

STATUS = {
    400: "bad input",
    401: "credentials missing or wrong (text/plain)",
    403: "a viewer's POST, or a cross-site request (text/plain)",
    404: "no such job",
    413: "the body is too large",
    415: "the body is not application/json",
    503: "the database is unreachable",
}
PATH_PARAMETER = re.compile(r"\{(\w+)(?::(\w+))?\}")


def openapi_path(path: str) -> str:
    """The OpenAPI form of a Starlette path: /api/jobs/{job_id:int} is /api/jobs/{job_id}."""
    return PATH_PARAMETER.sub(r"{\1}", path)


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route of `OPERATIONS`."""
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        parameters = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "integer"} if convertor == "int" else {"type": "string"},
            }
            for name, convertor in PATH_PARAMETER.findall(op.path)
        ]
        entry: dict[str, Any] = {
            "operationId": op.handler.__name__,
            "summary": op.summary,
            "parameters": parameters + list(op.query),
            "responses": {
                "200": {"description": "OK", "content": {op.media_type: {"schema": op.response}}}
            },
        }
        errors = set()
        if parameters or op.query or op.body is not None:
            errors.add(400)
        if not op.open:
            errors |= {401, 503}
        if op.not_found:
            errors.add(404)
        if op.body is not None:
            entry["requestBody"] = {
                "required": bool(op.body["required"]),
                "content": {JSON: {"schema": op.body}},
            }
            errors |= {403, 413, 415}
        if op.handler is openapi:
            errors.discard(503)
        if op.open:
            entry["security"] = []
            entry["responses"]["503"] = {
                "description": STATUS[503],
                "content": {JSON: {"schema": _ref("Health")}},
            }
        for status in sorted(errors):
            if status in (401, 403):
                content = {"text/plain": {"schema": {"type": "string"}}}
            else:
                content = {JSON: {"schema": _ref("Error")}}
            entry["responses"][str(status)] = {"description": STATUS[status], "content": content}
        paths.setdefault(openapi_path(op.path), {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "roadie dashboard API",
            "version": "1",
            "description": (
                "See and manage roadie's jobs. With credentials configured every route but "
                "/healthz needs HTTP Basic auth; a viewer may GET, an admin may also POST. "
                "POST bodies must be application/json; cross-site requests are refused."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"basicAuth": {"type": "http", "scheme": "basic"}},
        },
        "security": [{"basicAuth": []}],
    }


# -- errors ------------------------------------------------------------------------------------


def _in_api(request: Request) -> bool:
    path, root = request.scope["path"], request.scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path.startswith("/api/")


def _error(request: Request, status: int, message: str, headers: Any = None) -> Response:
    """The API's `{"error": ...}`; elsewhere (pages, /metrics) the message as plain text."""
    line = " ".join(str(message).split())
    if status in (204, 304):
        return Response(status_code=status, headers=headers)
    if _in_api(request):
        return JSONResponse({"error": line}, status_code=status, headers=headers)
    return PlainTextResponse(line, status_code=status, headers=headers)


async def _not_found(request: Request, exc: Exception) -> Response:
    return _error(request, 404, str(exc))


async def _invalid(request: Request, exc: Exception) -> Response:
    return _error(request, 400, str(exc))


async def _unavailable(request: Request, exc: Exception) -> Response:
    log.warning("%s %s: %s", request.method, request.url.path, exc)
    return _error(request, 503, str(exc))


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error(request, exc.status_code, exc.detail, exc.headers)


EXCEPTION_HANDLERS: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
    JobNotFound: _not_found,
    InvalidInput: _invalid,
    DatabaseUnavailable: _unavailable,
    RoadieError: _unavailable,  # SchemaMissing and the like: this database cannot serve
    HTTPException: _http,
}
