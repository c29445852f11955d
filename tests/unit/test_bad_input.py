"""Bad input at the API: refused with `InvalidInput` (a `ValueError`), one line, nothing written.

Database tests run on a real SQLite file and the real PostgreSQL (the `app` / `make_app`
fixtures). Each checks the job count afterwards: a refused call must write nothing at all.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roadie import App, DatabaseUnavailable, InvalidInput, RoadieError, Task, UnknownTask
from roadie.backends.base import SCHEMA
from roadie.config import _DURATION, QUEUE_NAME
from tests.helpers import json_args, same

UNREACHABLE_PG = "postgresql://postgres@127.0.0.1:1/roadie"
FIXTURE_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def count(app: App) -> int:
    return len(app.admin.list_jobs(limit=10_000))


def refused(call: Callable[[], Any], kind: type[Exception] = InvalidInput) -> str:
    """Run `call`, expect `kind` with a one-line message; returns the message."""
    with pytest.raises(kind) as info:
        call()
    assert isinstance(info.value, ValueError) or kind is DatabaseUnavailable
    message = str(info.value)
    assert message and "\n" not in message and "\r" not in message, message
    assert len(message) < 500, message
    return message


def assert_schema_intact(app: App) -> None:
    assert app.backend.schema_columns() == SCHEMA
    assert isinstance(app.admin.list_jobs(limit=1), list)


@pytest.fixture
def publish(app: App) -> Task:
    @app.task(queue="content")
    def publish(ctx, **kwargs: Any) -> dict[str, Any]:
        return kwargs

    return publish


# -- task names --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["nope", "", None, 5, "publish ", "PUBLISH", "publish\x00"])
def test_unknown_task_name(app: App, publish: Task, name: Any) -> None:
    message = refused(lambda: app.enqueue(name, {"x": 1}), UnknownTask)
    assert message.startswith("unknown task")
    assert issubclass(UnknownTask, InvalidInput) and issubclass(InvalidInput, ValueError)
    assert issubclass(InvalidInput, RoadieError)
    assert count(app) == 0


# -- arguments that are not JSON ---------------------------------------------------------------


class Unpicklable:
    """Pickling it would be noticed: roadie must never try."""

    reduced = False

    def __reduce__(self) -> Any:
        Unpicklable.reduced = True
        raise AssertionError("roadie tried to pickle an argument")


NOT_JSON = [
    datetime.now(UTC),
    date(2024, 1, 1),
    {1, 2, 3},
    frozenset({"a"}),
    Decimal("1.50"),
    Fraction(1, 3),
    complex(1, 2),
    Unpicklable(),
    b"bytes",
    bytearray(b"bytes"),
    object(),
    range(3),
    print,
]


@pytest.mark.parametrize("value", NOT_JSON, ids=lambda v: type(v).__name__)
def test_arguments_that_are_not_json(app: App, publish: Task, value: Any) -> None:
    for args in ({"value": value}, {"nested": [1, {"deep": value}]}):
        refused(lambda args=args: publish.enqueue(**args))
        refused(lambda args=args: app.enqueue("publish", args))
    refused(lambda: publish.enqueue_many([{"ok": 1}, {"value": value}]))
    assert not Unpicklable.reduced
    assert count(app) == 0


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=repr)
def test_nan_and_infinity(app: App, publish: Task, value: float) -> None:
    for args in ({"x": value}, {"x": [1.0, value]}, {"x": {"y": value}}):
        assert "NaN" in refused(lambda args=args: publish.enqueue(**args))
        refused(lambda args=args: app.enqueue("publish", args))
    assert count(app) == 0


@pytest.mark.parametrize(
    "args",
    [
        {"s": "\ud800"},
        {"s": "ok \udfff ok"},
        {"\ud83d": 1},
        {"s": ["fine", {"k": "\udc00"}]},
        {"s": {"\ud800x": 1}},
    ],
    ids=["value", "middle", "key", "nested-value", "nested-key"],
)
def test_lone_surrogates(app: App, publish: Task, args: dict[str, Any]) -> None:
    assert "surrogate" in refused(lambda: app.enqueue("publish", args))
    refused(lambda: publish.enqueue(**args))
    assert count(app) == 0


@pytest.mark.parametrize(
    "args",
    [
        {1: "a"},
        {None: 1},
        {(1, 2): 1},
        {"ok": 1, 2.5: "b"},
        {"a": {1: "x"}},
        {"a": [{True: 1}]},
        {"a": {"b": {None: None}}},
    ],
    ids=["int", "none", "tuple", "float", "nested-int", "nested-bool", "nested-none"],
)
def test_non_string_keys(app: App, publish: Task, args: dict[Any, Any]) -> None:
    refused(lambda: app.enqueue("publish", args))
    refused(lambda: publish.enqueue_many([{"ok": 1}, args]))
    assert count(app) == 0


def test_circular_arguments(app: App, publish: Task) -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    assert "circular" in refused(lambda: publish.enqueue(loop=loop))
    cycle: dict[str, Any] = {}
    cycle["self"] = cycle
    assert "circular" in refused(lambda: app.enqueue("publish", {"c": cycle}))
    assert count(app) == 0


@pytest.mark.parametrize("container", ["list", "dict"])
def test_deeply_nested_arguments(app: App, publish: Task, container: str) -> None:
    value: Any = 1
    for _ in range(10_000):
        value = [value] if container == "list" else {"a": value}
    refused(lambda: publish.enqueue(deep=value))
    refused(lambda: app.enqueue("publish", {"deep": value}))
    assert count(app) == 0


def test_arguments_over_the_default_limit(app: App, publish: Task) -> None:
    for text in ("x" * 300_000, "é" * 150_000, "😀" * 70_000):  # 300 KB, 300 KB, 280 KB UTF-8
        message = refused(lambda text=text: publish.enqueue(text=text))
        assert "limit of 262144 bytes" in message
    refused(lambda: publish.enqueue(parts=["y" * 1000] * 300))
    # 256 KB is the limit, counted in bytes of the serialized JSON: exactly at it is fine.
    overhead = len('{"t":""}')
    ok = publish.enqueue(t="z" * (256 * 1024 - overhead))
    refused(lambda: publish.enqueue(t="z" * (256 * 1024 - overhead + 1)))
    refused(lambda: publish.enqueue(t="é" * ((256 * 1024 - overhead) // 2 + 1)))
    assert [job.id for job in app.admin.list_jobs()] == [ok.id]


def test_arguments_over_a_custom_limit(make_app: Callable[..., App]) -> None:
    app = make_app(max_args_bytes=100)

    @app.task
    def small(ctx, **kwargs: Any) -> None: ...

    overhead = len('{"t":""}')
    job = small.enqueue(t="a" * (100 - overhead))
    assert "limit of 100 bytes" in refused(lambda: small.enqueue(t="a" * (100 - overhead + 1)))
    refused(lambda: small.enqueue(t="é" * 47))  # 94 bytes of text, 47 characters
    refused(lambda: app.enqueue("small", {"t": "b" * 200}))
    assert [j.id for j in app.admin.list_jobs()] == [job.id]


@pytest.mark.parametrize("limit", [0, -1, 1.5, "256KB", True, None, 2**40], ids=repr)
def test_bad_max_args_bytes(limit: Any, sqlite_url: str) -> None:
    assert "max_args_bytes" in refused(lambda: App(sqlite_url, max_args_bytes=limit))


@pytest.mark.parametrize(
    "bad",
    [
        {"x": math.nan},
        {"x": "y" * 300_000},
        {"x": {1, 2}},
        {"x": "\ud800"},
        {3: "x"},
        5,
        "text",
        None,
        [("x", 1)],
    ],
    ids=["nan", "too-big", "set", "surrogate", "int-key", "int", "str", "none", "pairs"],
)
def test_enqueue_many_with_one_bad_element_writes_nothing(
    app: App, publish: Task, bad: Any
) -> None:
    batch = [{"n": i} for i in range(50)] + [bad] + [{"n": i} for i in range(50, 100)]
    refused(lambda: publish.enqueue_many(batch))
    refused(lambda: publish.enqueue_many(iter(batch)))
    assert count(app) == 0
    assert len(publish.enqueue_many([{"n": i} for i in range(3)])) == 3


def test_enqueue_many_refuses_a_mapping_or_text(app: App, publish: Task) -> None:
    refused(lambda: publish.enqueue_many({"n": 1}))
    refused(lambda: publish.enqueue_many("nn"))
    refused(lambda: publish.options(idempotency_key="k").enqueue_many([{"n": 1}]))
    assert count(app) == 0


@pytest.mark.parametrize("args", [[1, 2], "text", 7, ("a", 1)], ids=repr)
def test_arguments_that_are_not_an_object(app: App, publish: Task, args: Any) -> None:
    refused(lambda: app.enqueue("publish", args))
    assert count(app) == 0


# -- queue names -------------------------------------------------------------------------------

CLASSIC_BAD_QUEUES = [
    "q'; DROP TABLE roadie_jobs;--",
    "q'; DROP TABLE jobs;--",
    "<script>alert(1)</script>",
    "q" * 10_000,
    "q" * 65,
    "",
    "content\x00",
    "\x00",
    "\u202econtent",  # right-to-left override
    "محتوى",
    "../x",
    "a/b",
    "Content",
    "content ",
    " content",
    "con tent",
    "content\n",
    "😀",
]
bad_queue_names = st.one_of(
    st.text(max_size=100).filter(lambda s: not QUEUE_NAME.fullmatch(s)),
    st.sampled_from(CLASSIC_BAD_QUEUES),
    st.integers(),
    st.binary(max_size=10),
    st.lists(st.just("content"), min_size=1, max_size=2),
)


@pytest.mark.parametrize("queue", CLASSIC_BAD_QUEUES, ids=lambda q: repr(q)[:30])
def test_classic_bad_queue_names(app: App, publish: Task, queue: str) -> None:
    assert "invalid queue name" in refused(lambda: app.enqueue("publish", {}, queue=queue))
    refused(lambda: publish.options(queue=queue))
    refused(lambda: app.task(name=f"t{len(app.tasks)}", queue=queue)(lambda ctx: None))
    refused(lambda: app.admin.list_jobs(queue=queue))
    refused(lambda: app.run_worker(queues=[queue], burst=True))
    assert count(app) == 0
    assert_schema_intact(app)


@FIXTURE_SETTINGS
@given(queue=bad_queue_names)
def test_bad_queue_names_property(app: App, publish: Task, queue: Any) -> None:
    before = count(app)
    refused(lambda: app.enqueue("publish", {"n": 1}, queue=queue))
    refused(lambda: publish.options(queue=queue))
    refused(lambda: app.admin.list_jobs(queue=queue))
    assert count(app) == before == 0
    assert_schema_intact(app)


@FIXTURE_SETTINGS
@given(queue=st.from_regex(QUEUE_NAME, fullmatch=True))
def test_every_valid_queue_name_works(app: App, publish: Task, queue: str) -> None:
    job = app.enqueue("publish", {"n": 1}, queue=queue)
    assert app.get_job(job.id).queue == queue
    assert next(j.id for j in app.admin.list_jobs(queue=queue)) == job.id


# -- durations, priorities, attempts, run_at ---------------------------------------------------

SPECIAL_BAD_DURATIONS = [
    math.nan,
    math.inf,
    -math.inf,
    True,
    False,
    -1,
    -0.001,
    10**400,
    -(10**400),
    "nan",
    "inf",
    "-5s",
    "1e3s",
    "5 seconds",
    "5sec",
    "",
    " ",
    "1.s",
    ".5s",
    "5s5",
    "1h30m",
    "10m\x00",
    b"30s",
    [30],
    {"s": 30},
    object(),
    Decimal("30"),
    timedelta(seconds=-1),
]
junk_durations = st.one_of(
    st.text(max_size=30).filter(lambda s: not _DURATION.fullmatch(s)),
    st.floats(max_value=-1e-9, allow_nan=False),
    st.integers(max_value=-1),
    st.integers(min_value=1, max_value=10**6).map(lambda n: f"-{n}s"),
    st.sampled_from(SPECIAL_BAD_DURATIONS),
)


def _delay_calls(app: App, publish: Task, delay: Any) -> list[Callable[[], Any]]:
    return [
        lambda: app.enqueue("publish", {}, delay=delay),
        lambda: publish.options(delay=delay),
    ]


@pytest.mark.parametrize("delay", SPECIAL_BAD_DURATIONS, ids=lambda v: repr(v)[:20])
def test_bad_delays(app: App, publish: Task, delay: Any) -> None:
    for call in _delay_calls(app, publish, delay):
        assert "delay" in refused(call)
    assert count(app) == 0


@pytest.mark.parametrize("delay", [86400 * 3651, "3651d", timedelta(days=4000), 1e300])
def test_delays_over_ten_years(app: App, publish: Task, delay: Any) -> None:
    for call in _delay_calls(app, publish, delay):
        refused(call)
    assert count(app) == 0


@FIXTURE_SETTINGS
@given(duration=junk_durations)
def test_bad_durations_property(app: App, publish: Task, duration: Any) -> None:
    for call in _delay_calls(app, publish, duration):
        assert "delay" in refused(call)
    assert "timeout" in refused(lambda: app.task(name="timed", timeout=duration)(lambda ctx: None))
    refused(lambda: App(app.database_url, lease=duration))
    assert "timed" not in app.tasks
    assert count(app) == 0


@pytest.mark.parametrize(
    "priority", [1001, -1001, 10**100, 1.5, math.nan, "1", True, False, [1]], ids=repr
)
def test_bad_priority(app: App, publish: Task, priority: Any) -> None:
    assert "priority" in refused(lambda: app.enqueue("publish", {}, priority=priority))
    refused(lambda: publish.options(priority=priority))
    refused(lambda: app.task(name="prio", priority=priority)(lambda ctx: None))
    assert count(app) == 0


@pytest.mark.parametrize("max_attempts", [0, -1, 1001, 10**9, 2.0, "3", True, [3]], ids=repr)
def test_bad_max_attempts(app: App, publish: Task, max_attempts: Any) -> None:
    assert "max_attempts" in refused(lambda: app.enqueue("publish", {}, max_attempts=max_attempts))
    refused(lambda: publish.options(max_attempts=max_attempts))
    refused(lambda: app.task(name="tries", max_attempts=max_attempts)(lambda ctx: None))
    assert count(app) == 0


@pytest.mark.parametrize(
    "run_at",
    [
        datetime(2030, 1, 1),  # naive
        datetime.now(),  # naive
        datetime(9999, 12, 31, 23, 59, tzinfo=UTC),
        datetime.now(UTC) + timedelta(days=3700),
        "2030-01-01T00:00:00+00:00",
        date(2030, 1, 1),
        1_900_000_000,
        1.9e9,
    ],
    ids=["naive", "naive-now", "year-9999", "eleven-years", "text", "date", "int", "float"],
)
def test_bad_run_at(app: App, publish: Task, run_at: Any) -> None:
    assert "run_at" in refused(lambda: app.enqueue("publish", {}, run_at=run_at))
    refused(lambda: publish.options(run_at=run_at))
    assert count(app) == 0


@pytest.mark.parametrize(
    "key",
    ["", "k" * 256, 5, b"key", "key\x00", "\ud800"],
    ids=["empty", "long", "int", "bytes", "nul", "surrogate"],
)
def test_bad_idempotency_keys(app: App, publish: Task, key: Any) -> None:
    refused(lambda: app.enqueue("publish", {}, idempotency_key=key))
    refused(lambda: publish.options(idempotency_key=key))
    assert count(app) == 0


# -- database URLs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "mysql://root@localhost/db",
        "sqlite://",
        "sqlite:///",
        "sqlite:",
        "sqlite:///roadie.db?mode=ro",
        "sqlite:///roadie.db?synchronous=off",
        "sqlite:///roadie.db?synchronous=normal?x=1",
        "sqlite:///?synchronous=normal",
        "postgresql://",
        "postgres://",
        "postgresql://a://b",
        "postgresql://postgres@localhost/db?nonsense=1",
        "http://example.com",
        "",
        " ",
        "None",
        "null",
        "roadie.db",
        b"sqlite:///roadie.db",
        0,
        False,
        ["sqlite:///roadie.db"],
    ],
    ids=repr,
)
def test_malformed_database_urls(url: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ROADIE_DATABASE_URL", raising=False)
    assert "database URL" in refused(lambda: App(url))
    with App(f"sqlite:///{tmp_path / 'ok.db'}") as app:
        refused(lambda: app.use_database(url))
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing was created


def test_malformed_database_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROADIE_DATABASE_URL", "mysql://root@localhost/db")
    assert "mysql" in refused(lambda: App())


def test_unreachable_postgresql() -> None:
    with App(UNREACHABLE_PG) as app:  # connecting is lazy: constructing succeeds

        @app.task
        def t(ctx) -> None: ...

        for call in (
            lambda: app.get_job(1),
            lambda: t.enqueue(),
            app.migrate,
            lambda: app.admin.list_jobs(),
        ):
            message = refused(call, DatabaseUnavailable)
            assert "PostgreSQL" in message


# -- JSON round trip ---------------------------------------------------------------------------


@FIXTURE_SETTINGS
@given(args=json_args)
def test_json_arguments_round_trip_exactly(app: App, publish: Task, args: dict[str, Any]) -> None:
    job = app.enqueue("publish", args)
    assert same(job.args, args), (job.args, args)
    stored = app.get_job(job.id)
    assert stored is not None and same(stored.args, args), (stored.args, args)


# -- a job whose task the worker lacks ---------------------------------------------------------


def test_a_worker_without_the_task_fails_the_job_permanently(
    make_app: Callable[..., App],
) -> None:
    producer = make_app()

    @producer.task(queue="content")
    def orphan(ctx, n: int) -> int:
        return n

    job = orphan.enqueue(n=1)
    consumer = make_app()

    @consumer.task(queue="content")
    def something_else(ctx) -> None: ...

    assert consumer.run_worker(queues=["content"], burst=True) == 0
    failed = consumer.get_job(job.id)
    assert failed.state == "failed" and failed.failure == "permanent"
    assert failed.error == "unknown task 'orphan'"
    assert failed.attempt == 1 and failed.finished_at is not None
    [record] = failed.attempts
    assert record["outcome"] == "failed" and record["error"] == "unknown task 'orphan'"
