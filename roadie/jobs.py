"""The Job snapshot, its states and outcomes, and the JSON rules for what a job carries. Pure."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from roadie.config import shown
from roadie.errors import InvalidInput

PENDING, RUNNING, WAITING = "pending", "running", "waiting"
COMPLETE, FAILED, CANCELLED = "complete", "failed", "cancelled"
STATES = (PENDING, RUNNING, WAITING, COMPLETE, FAILED, CANCELLED)
TERMINAL_STATES = (COMPLETE, FAILED, CANCELLED)

# Attempt outcomes and failure kinds (DESIGN.md, "Details users and scripts rely on").
OUTCOMES = ("complete", "failed", "retry", "lost", "expired", "cancelled")
FAILURES = ("permanent", "exhausted", "expired", "lost", "child_failed")
MAX_LOST_ATTEMPTS = 3
MAX_ERROR_BYTES = 64 * 1024


OPTIONAL_FIELDS = {  # Job's fields with defaults (the two lists are made new for each job)
    "timeout": None,
    "needs_review": False,
    "callback_key": None,
    "review_note": None,
    "reviewed_at": None,
    "stuck": None,
    "children": None,
}


@dataclass(frozen=True)
class Job:
    """A snapshot of one job row; reading it again gives a newer snapshot."""

    id: int
    queue: str
    task: str
    args: dict[str, Any]
    priority: int
    state: str
    attempt: int
    max_attempts: int
    created_at: datetime
    run_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    result: Any
    error: str | None
    failure: str | None
    progress: dict[str, Any] | None
    parent_id: int | None
    locked_by: str | None
    lock_expires_at: datetime | None
    idempotency_key: str | None
    timeout: float | None = None
    needs_review: bool = False  # failed and not yet dealt with by an administrator
    attempts: list[dict[str, Any]] = field(default_factory=list)
    callback_key: str | None = None  # set on a callback job: which ending it answers
    review_note: str | None = None  # what the administrator who resolved its review wrote
    reviewed_at: datetime | None = None
    args_history: list[dict[str, Any]] = field(default_factory=list)  # arguments a retry replaced
    stuck: str | None = None  # why an admin listing shows it as stuck (see `stuck_reason`)
    children: list[Job] | None = None  # the jobs it spawned, when read with them (get_job)

    @classmethod
    def from_fields(cls, values: dict[str, Any]) -> Job:
        """A snapshot from every field without a default (others may be given too).

        The frozen dataclass's `__init__` sets its 30 fields one `object.__setattr__` at a time,
        and a Job is built for every job a worker claims or an enqueue inserts: this fills the
        instance's `__dict__` at once, about four times faster. `values` is used as given.
        """
        return cls.from_all_fields(
            {**OPTIONAL_FIELDS, "attempts": [], "args_history": [], **values}
        )

    @classmethod
    def from_all_fields(cls, values: dict[str, Any]) -> Job:
        """A snapshot from a dict of every field, which becomes the instance's `__dict__`: for
        callers that build that dict anyway (a claimed row, a batch of inserted jobs), it saves
        merging it into another."""
        job = object.__new__(cls)
        object.__setattr__(job, "__dict__", values)
        return job

    @property
    def child_counts(self) -> dict[str, int]:
        """How many of its children are in each state (read with `app.get_job`)."""
        counts: dict[str, int] = {}
        for child in self.children or []:
            counts[child.state] = counts.get(child.state, 0) + 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of `--json` output: timestamps as ISO 8601 with an offset; `children`
        as job objects when they were read, else left out."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "children"}
        data["attempts"] = [_iso_times(record) for record in self.attempts]
        data["args_history"] = [_iso_times(record) for record in self.args_history]
        if self.children is not None:
            data["children"] = [child.to_dict() for child in self.children]
        return _iso_times(data)


# A running job is shown as stuck past its timeout, once its lease ran out with no reaper to
# return it, or when it has run STUCK_FACTOR times its task's usual (p95) duration, and at least
# STUCK_FLOOR seconds, with STUCK_SAMPLES recent completions to judge "usual" by.
STUCK_FACTOR = 10
STUCK_FLOOR = 60.0
STUCK_SAMPLES = 5


def stuck_reason(job: Job, now: datetime, usual: tuple[int, float] | None = None) -> str | None:
    """Why a running job looks stuck ("past timeout", "lease expired", "slow"), or None.

    `usual` is (samples, p95 seconds) of the task's recent completions.
    """
    if job.state != RUNNING or job.started_at is None:
        return None
    ran = (now - job.started_at).total_seconds()
    if job.timeout is not None and ran > job.timeout:
        return "past timeout"
    if job.lock_expires_at is not None and job.lock_expires_at < now:
        return "lease expired"
    if usual is not None:
        samples, p95 = usual
        if samples >= STUCK_SAMPLES and ran > max(STUCK_FACTOR * p95, STUCK_FLOOR):
            return "slow"
    return None


def _iso_times(data: dict[str, Any]) -> dict[str, Any]:
    """The same mapping with its datetime values (not nested ones) as ISO 8601 text."""
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in data.items()}


@dataclass(frozen=True)
class NewJob:
    """A validated job about to be inserted; `args` is already serialized JSON."""

    queue: str
    task: str
    args_json: str
    priority: int
    max_attempts: int
    delay: float  # seconds after the database's now; 0 for due at once
    run_at: datetime | None  # an absolute time; wins over delay
    idempotency_key: str | None
    timeout: float | None
    parent_id: int | None = None

    def with_args(self, args_json: str) -> NewJob:
        """The same job with other arguments. `enqueue_many` checks the options once and makes
        one of these per argument object; `dataclasses.replace` would cost ~10 µs a job."""
        job = object.__new__(NewJob)
        job.__dict__.update(self.__dict__, args_json=args_json)
        return job


@dataclass(frozen=True)
class Fence:
    """What a worker owns: every write about a running job must match the first three.

    `parent_id` says the job sits in a tree, so its end must be told to its parent in the same
    transaction. `held` is how long a job claimed ahead waited in the worker's buffer before
    its handler started: the final write moves `started_at` (stamped by the claim) by that much,
    so durations and attempt records count from the real start.
    """

    job_id: int
    attempt: int
    worker_id: str
    parent_id: int | None = None
    held: float = 0.0


# One strict encoder for every result, argument set and progress report: json.dumps with
# options builds a new encoder per call, a third of a no-op job's result encoding.
_STRICT_ENCODER = json.JSONEncoder(allow_nan=False, ensure_ascii=False, separators=(",", ":"))


def encode_json(value: Any, what: str) -> str:
    """Serialize as strict JSON (no NaN, no pickling, no lone surrogates) or refuse."""
    if value is None:  # most handlers return nothing
        return "null"
    try:
        text = _STRICT_ENCODER.encode(value)
    except ValueError as exc:
        if "ircular" in str(exc):
            raise InvalidInput(
                f"{what} hold a circular reference, which JSON cannot hold"
            ) from None
        raise InvalidInput(f"{what} hold NaN or Infinity, which JSON does not allow") from None
    except TypeError as exc:
        raise InvalidInput(f"{what} are not JSON: {exc}") from None
    except RecursionError:
        raise InvalidInput(f"{what} are nested too deeply to be JSON") from None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{what} hold a lone surrogate, which is not valid Unicode") from None
    return text


def encode_args(args: Any, limit: int) -> str:
    """Arguments are a JSON object of keyword arguments, at most `limit` UTF-8 bytes."""
    if not isinstance(args, dict):
        raise InvalidInput(
            f"arguments must be a JSON object of keyword arguments, not {type(args).__name__}"
        )
    if not args:
        return "{}"
    bad_keys = [key for key in args if not isinstance(key, str)]
    if bad_keys:
        raise InvalidInput(f"argument names must be strings, not {shown(bad_keys[0])}")
    text = encode_json(args, "arguments")
    size = len(text.encode("utf-8"))
    if size > limit:
        raise InvalidInput(f"arguments are {size} bytes, over the limit of {limit} bytes")
    _check_nested_keys(args)
    return text


def _check_nested_keys(value: Any) -> None:
    """Refuse object keys that are not text at any depth: JSON would silently turn 1 into "1".

    Runs after a successful `json.dumps`, so the value is known to be finite and acyclic.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise InvalidInput(f"object keys in arguments must be text, not {shown(key)}")
                stack.append(child)
        elif isinstance(item, list | tuple):
            stack.extend(item)


def clean_text(text: str | None, limit: int = MAX_ERROR_BYTES) -> str | None:
    """Errors and tracebacks as storable text: valid UTF-8, no NUL, truncated to `limit` bytes."""
    if text is None:
        return None
    data = text.replace("\x00", "\ufffd").encode("utf-8", "replace")
    if len(data) > limit:
        marker = b"\n... [truncated]"
        data = data[: limit - len(marker)] + marker
    return data.decode("utf-8", "ignore")


# What varies between occurrences of one failure: quoted values, ids, addresses, numbers.
# A quote opens only where no letter precedes it, so "can't" is an apostrophe, not a quote; a
# hex id is a word of hex digits holding both a digit and a letter, in any order.
_VARYING = (
    (re.compile(r"(?<!\w)'[^']*'|\"[^\"]*\""), "'…'"),
    (
        re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I),
        "<uuid>",
    ),
    (
        re.compile(r"\b0x[0-9a-f]+\b|\b(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]+\b", re.I),
        "<hex>",
    ),
    (re.compile(r"\d+(\.\d+)?"), "N"),
)
SIGNATURE_LENGTH = 200


def error_signature(error: str) -> str:
    """An error's first line with what varies between occurrences masked, so one cause gives
    one signature: "ConnectionError: smtp down after 3 tries (job 81)" and "... 5 tries (job 9)"
    are both "ConnectionError: smtp down after N tries (job N)"."""
    line = error.strip().splitlines()[0] if error.strip() else ""
    for pattern, mask in _VARYING:
        line = pattern.sub(mask, line)
    return " ".join(line.split())[:SIGNATURE_LENGTH]
