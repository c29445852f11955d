"""The pure rules: durations, names, backoff, classification, JSON, truncation."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roadie import App, Backoff, InvalidInput, Permanent, Transient
from roadie.config import check_queue, parse_database_url, parse_duration
from roadie.jobs import clean_text, encode_args
from roadie.report import round_span, span
from roadie.retry import decide, decide_expiry, describe, normalize_retry_on


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("500ms", 0.5), ("30s", 30), ("30", 30), ("0.25", 0.25), ("15m", 900), ("2h", 7200), ("7d", 604800), ("1.5s", 1.5),
     (0, 0), (12, 12), (2.5, 2.5), (timedelta(minutes=2), 120)],
)  # fmt: skip
def test_durations(value, seconds) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0.25, "250ms"), (0.9999, "999ms"), (4.2, "4.2s"), (9.99, "9.9s"), (38.6, "38s"),
     (59.9, "59s"), (187, "3m07s"), (5 * 3600 + 120, "5h02m"), (2 * 86400 + 4 * 3600 + 59, "2d04h"),
     (-3, "0ms")],
)  # fmt: skip
def test_spans_read_in_two_units_cut_down(seconds, text) -> None:
    assert span(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"), [(900, "15m"), (3600, "1h"), (90, "90s"), (7 * 86400, "7d"), (7.5, "7.5s")]
)
def test_round_spans_read_as_given(seconds, text) -> None:
    assert round_span(seconds) == text
    if seconds >= 1 and seconds % 1 == 0:
        assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "value", ["", "5 sec", "-1s", "1w", "s", None, True, -3, float("nan"), float("inf"), [1]]
)
def test_bad_durations_are_refused_in_one_line(value) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_duration(value, "delay")
    assert "\n" not in str(err.value) and "delay" in str(err.value)


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_.-", min_size=1, max_size=64))
def test_every_valid_queue_name_is_accepted(name: str) -> None:
    assert check_queue(name) == name


def test_database_urls() -> None:
    assert parse_database_url("sqlite:///roadie.db").url == "roadie.db"
    assert parse_database_url("sqlite:////var/lib/roadie.db").url == "/var/lib/roadie.db"
    assert parse_database_url("postgresql://u@h:5432/db").scheme == "postgresql"
    for bad in ("", "mysql://x", "sqlite://", "sqlite:///", "roadie.db", None):
        with pytest.raises(InvalidInput):
            parse_database_url(bad)


def test_sqlite_commits_are_durable_unless_the_url_asks_otherwise(tmp_path: Path) -> None:
    assert parse_database_url("sqlite:///r.db").synchronous == "full"
    normal = parse_database_url("sqlite:///r.db?synchronous=NORMAL")
    assert (normal.url, normal.synchronous) == ("r.db", "normal")
    for option, level in (("", 2), ("?synchronous=full", 2), ("?synchronous=normal", 1)):
        with App(f"sqlite:///{tmp_path / 'r.db'}{option}") as app:
            app.migrate()
            with app.backend._write_transaction() as conn:  # type: ignore[attr-defined]
                assert conn.execute("PRAGMA synchronous").fetchone()[0] == level


def test_backoff_doubles_from_one_second_capped_at_an_hour_with_jitter() -> None:
    plain = Backoff(jitter=0)
    assert [plain.delay(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert plain.delay(30) == 3600 and plain.delay(10_000) == 3600
    rng = random.Random(7)
    delays = [Backoff().delay(3, rng) for _ in range(1000)]
    assert min(delays) >= 3.2 and max(delays) <= 4.8 and 3.9 < sum(delays) / 1000 < 4.1


@pytest.mark.parametrize("bad", [{"factor": 0.5}, {"jitter": 1.0}, {"base": "soon"}, {"cap": -1}])
def test_bad_backoff_is_refused(bad) -> None:
    with pytest.raises(InvalidInput):
        Backoff(**bad)


def test_decide_classifies_and_respects_attempts() -> None:
    none = normalize_retry_on(())
    assert decide(Transient("x"), 1, 3, none).retry
    assert decide(TimeoutError(), 1, 3, none).retry
    assert decide(ConnectionRefusedError(), 1, 3, none).retry
    assert decide(ValueError(), 1, 3, none).failure == "permanent"
    assert decide(Permanent("x"), 1, 3, normalize_retry_on((Exception,))).failure == "permanent"
    assert decide(TimeoutError(), 3, 3, none).failure == "exhausted"
    assert decide(Transient("x", retry_in="2m"), 1, 3, none).delay == 120
    custom = normalize_retry_on({KeyError: Backoff(base="5s", jitter=0)})
    assert decide(KeyError("k"), 2, 5, custom).delay == 10
    assert decide_expiry(2, 2).failure == "expired" and decide_expiry(1, 2).retry


def test_retry_on_refuses_what_is_not_an_exception_class() -> None:
    with pytest.raises(InvalidInput):
        normalize_retry_on(("TimeoutError",))
    with pytest.raises(InvalidInput):
        normalize_retry_on({TimeoutError: 5})


def test_describe() -> None:
    assert describe(Permanent("corrupt upload")) == "corrupt upload"
    assert describe(ValueError("bad")) == "ValueError: bad"
    assert describe(KeyboardInterrupt()) == "KeyboardInterrupt"


def test_clean_text_truncates_to_64kb_and_keeps_valid_utf8() -> None:
    text = clean_text("é" * 100_000 + "\x00")
    assert len(text.encode()) <= 64 * 1024 and text.endswith("[truncated]")
    assert clean_text("a\x00b") == "a\ufffdb"
    assert clean_text("\ud800") == "?"
    assert clean_text(None) is None


def test_encode_args_counts_utf8_bytes() -> None:
    assert encode_args({"s": "é" * 100}, 300)
    with pytest.raises(InvalidInput, match="over the limit"):
        encode_args({"s": "é" * 200}, 300)


def test_passwords_in_urls_are_masked_in_errors() -> None:
    with pytest.raises(InvalidInput) as err:
        parse_database_url("mysql://admin:s3cret@db/roadie")
    assert "s3cret" not in str(err.value) and "admin:***@db" in str(err.value)


# -- error signatures (roadie failures) --------------------------------------------------------

from roadie.jobs import error_signature  # noqa: E402  (this section was appended)


@pytest.mark.parametrize(
    ("errors", "signature"),
    [
        (["ConnectionError: cannot reach smtp.example.com:25 after 3 tries (job 81)",
          "ConnectionError: cannot reach smtp.example.com:587 after 12 tries (job 90210)"],
         "ConnectionError: cannot reach smtp.example.com:N after N tries (job N)"),
        (["KeyError: 'user_42'", 'KeyError: "video:7"', "KeyError: ''"], "KeyError: '…'"),
        (["ValueError: can't convert 'abc' to int", "ValueError: can't convert '12' to int"],
         "ValueError: can't convert '…' to int"),
        (["upload 550e8400-e29b-41d4-a716-446655440000 missing",
          "upload 6BA7B810-9DAD-11D1-80B4-00C04FD430C8 missing"], "upload <uuid> missing"),
        (["object abc123 not found", "object 5f3a1b not found", "object 0xDEADBEEF not found"],
         "object <hex> not found"),
        (["timeout after 1.5s on 10.0.0.12", "timeout after 30s on 10.0.3.7"],
         "timeout after Ns on N.N"),
        (["OSError: disk full\nTraceback (most recent call last):\n  File \"x.py\", line 3",
          "  OSError:   disk   full  "], "OSError: disk full"),
    ],
)  # fmt: skip
def test_one_cause_gives_one_error_signature(errors: list[str], signature: str) -> None:
    assert {error_signature(error) for error in errors} == {signature}


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("ConnectionError: smtp down", "TimeoutError: smtp down"),
        ("ValueError: bad size 3", "ValueError: bad codec 3"),
        ("disk full on /var", "disk full on /srv"),
        ("KeyError: 'a'", "IndexError: 'a'"),
    ],
)
def test_different_causes_give_different_signatures(one: str, other: str) -> None:
    assert error_signature(one) != error_signature(other)


def test_error_signature_edges() -> None:
    assert error_signature("") == "" and error_signature("  \n ") == ""
    assert error_signature("\n\nRuntimeError: boom 7\nmore") == "RuntimeError: boom N"
    long = error_signature("x" * 1000 + " 42")
    assert long == "x" * 200
    assert error_signature("deadbeef facade cafe") == "deadbeef facade cafe"  # words, no digits


from dataclasses import fields  # noqa: E402  (this section was appended)
from datetime import UTC, datetime  # noqa: E402

from roadie.backends.base import JOB_COLUMNS, inserted_job, row_to_job  # noqa: E402
from roadie.jobs import Job, NewJob  # noqa: E402


def test_snapshots_built_without_dataclass_init_hold_every_field() -> None:
    """A claimed row and an inserted job become Jobs by setting `__dict__` whole (the hot paths
    skip the dataclass's `__init__`): a field left out would only fail when first read."""
    every_field = {field.name for field in fields(Job)}
    now = datetime.now(UTC)
    row = dict.fromkeys(JOB_COLUMNS)
    row.update(id=7, args="{}", attempts="[]", args_history="[]", created_at=now, run_at=now)
    claimed = row_to_job(row, lambda value: value, lambda value: value)
    new = NewJob("content", "thumbnail", "{}", 0, 3, 0.0, None, None, None)
    inserted = inserted_job(new, 8, now, now)
    assert set(vars(claimed)) == every_field
    assert set(vars(inserted)) == every_field
    assert (
        inserted.attempts == [] and inserted.attempts is not inserted_job(new, 9, now, now).attempts
    )
