"""F18 and F19: what old rows and old snapshots do to a running system (PostgreSQL).

F18 holds a REPEATABLE READ transaction open (its snapshot pins the xmin horizon, so no dead job
row can be vacuumed meanwhile: the MVCC trap of FAULTS.md conclusion 6) while jobs arrive at a
steady rate and workers drain them: claims must continue, and roadie's own transactions stay
short (I7: < 5 s; measured on roadie's connections only, since the test's is long on purpose).
Claim latency (started_at - run_at, the database's clock) is reported before, during and after.

F19 fills the table with finished jobs older than the retention (inserted in bulk with SQL) and
lets the workers' pruner (`roadie worker --retention`) delete them while the workers drain new
jobs: batches stay <= 10k rows, no statement of the pruner's is slow (pg_stat_statements: the
figure is reported, a generous bound asserted), every pruned job is counted in the hourly
rollups, claims continue.

Short forms: seconds. Long forms (ROADIE_FAULTS=long): a 2-minute snapshot; 1,000,000 old jobs.
Both on the module's throwaway cluster, so the pinned horizon and the bulk rows touch no one
else's database.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

import roadie.admin
from roadie import App
from roadie.backends import open_backend
from tests.faults import netfaults
from tests.faults.dbworkload import APP
from tests.faults.harness import FaultDatabase, Figures, Supervisor, check_invariants, percentile
from tests.faults.netfaults import RoadieTransactions
from tests.faults.workload import Feeder
from tests.helpers import wait_until

pg_cluster = netfaults.pg_cluster  # the module's throwaway cluster (fixture)
db_url = netfaults.db_url  # every test's database is on it (fixture)
I7_LIMIT = 5.0
PRUNER_STATEMENTS = (  # the pruner's queries, by their leading comments (queries/job_prune_*.sql)
    "-- Delete the jobs",
    "-- Up to $1 jobs of the hour",
    "-- Add the jobs",
    "-- The rollups the hour",
    "-- Start the rollups",
    "-- The start of the oldest hour",
)


def _latencies(db: FaultDatabase, since: Any, until: Any) -> list[float]:
    """Claim latency (started_at - run_at, seconds) of the jobs due in [since, until)."""
    return [
        row[0]
        for row in db.rows(
            "SELECT extract(epoch FROM started_at - run_at)::float8 FROM roadie_jobs"
            " WHERE run_at >= ? AND run_at < ? AND started_at IS NOT NULL",
            since,
            until,
        )
    ]


def _summary(values: list[float]) -> dict[str, Any]:
    return {
        "jobs": len(values),
        "p50_ms": None if not values else round(1000 * (percentile(values, 50) or 0), 1),
        "p99_ms": None if not values else round(1000 * (percentile(values, 99) or 0), 1),
    }


def test_f18_long_snapshot_under_steady_load(
    fault_db: FaultDatabase,
    tasks: App,
    supervisor: Callable[..., Supervisor],
    figures: Figures,
    long_form: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A REPEATABLE READ transaction held open while jobs arrive steadily: claims continue
    throughout, roadie's own transactions stay under 5 s, every job completes once, and the
    "old snapshot" alert fires while it is held (its 5 minutes lowered to half the hold)."""
    rate, lead, hold, tail = (200, 20.0, 120.0, 20.0) if long_form else (100, 2.0, 4.0, 2.0)
    monkeypatch.setattr(roadie.admin, "ALERT_SNAPSHOT_AGE", hold / 2)
    sup = supervisor(workers=2, concurrency=4, lease="2s", sweep="0.5s", app=APP)
    own = RoadieTransactions(fault_db.url, limit=I7_LIMIT).start()
    feeder = Feeder(tasks.get_task("work"), rate, {"ms": 2, "ms_max": 10}).start()
    holder = psycopg.connect(fault_db.url, application_name="faults-snapshot")
    try:
        time.sleep(lead)  # steady state before the snapshot
        began = fault_db.value("SELECT now()")
        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        pinned = holder.execute("SELECT count(*) FROM roadie_jobs").fetchone()
        started_during = fault_db.count("complete")
        time.sleep(hold)  # the snapshot stays open this long
        completed_during = fault_db.count("complete") - started_during
        xmin_age = fault_db.value(
            "SELECT max(age(backend_xmin)) FROM pg_stat_activity"
            " WHERE application_name = 'faults-snapshot'"
        )
        alerted = [a.message for a in tasks.admin.alerts() if a.kind == "snapshot"]
        holder.execute("COMMIT")
        ended = fault_db.value("SELECT now()")
        time.sleep(tail)
        alerted_after = [a.message for a in tasks.admin.alerts() if a.kind == "snapshot"]
    finally:
        ids = feeder.stop()
        holder.close()
    report = check_invariants(fault_db, ids, timeout=300 if long_form else 60, supervisor=sup)
    own.stop()
    before = _summary(_latencies(fault_db, "-infinity", began))
    during = _summary(_latencies(fault_db, began, ended))
    after = _summary(_latencies(fault_db, ended, "infinity"))
    figures.record(
        jobs=len(ids),
        rate_per_s=rate,
        hold_s=hold,
        claim_latency_before=before,
        claim_latency_during=during,
        claim_latency_after=after,
        xmin_age_at_release=xmin_age,
        roadie_oldest_transaction_s=round(own.oldest, 3),
        extra_executions=report.extra_executions,
        snapshot_alert=alerted,
    )
    print(f"F18: before {before}, during {during}, after {after}; oldest {own.oldest:.3f}s")
    assert len(alerted) == 1 and "faults-snapshot" in alerted[0], "the old-snapshot alert"
    assert not alerted_after, "the alert outlived the snapshot"
    assert pinned is not None
    assert completed_during > 0 and during["jobs"] > 0, "no claims while the snapshot was held"
    assert not own.violations, f"I7: roadie transactions older than {I7_LIMIT}s: {own.violations}"
    assert xmin_age is not None and xmin_age > 0  # the snapshot really pinned the horizon
    assert sup.restarts == 0


def test_f18_a_listener_never_looks_like_an_old_transaction(db_url: str) -> None:
    """The server process of a `LISTEN` connection reads each notification in a brief
    transaction stamped with the connection's last statement's start: a listener that only
    waits looked like a transaction open since its `LISTEN` (I7 failed in 2 of 5 long F18 runs,
    and roadie's old-snapshot alert could fire on its own workers). The backend refreshes its
    listener every second; under a stream of notifications no sample may show it older."""
    backend = open_backend(db_url)
    sampler = psycopg.connect(db_url, autocommit=True)
    stop = threading.Event()

    def listen() -> None:
        while not stop.is_set():
            backend.wait_for_jobs(["default"], timeout=0.1)

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    try:
        wait_until(lambda: backend._listener is not None, timeout=10, what="the listener")
        pid = backend._listener.info.backend_pid  # type: ignore[union-attr]
        ages = []
        deadline = time.monotonic() + 5.0  # the LISTEN grows 5 s old meanwhile
        while time.monotonic() < deadline:
            sampler.execute("SELECT pg_notify('roadie_jobs', 'elsewhere')")
            row = sampler.execute(
                "SELECT extract(epoch FROM now() - xact_start)::float8 FROM pg_stat_activity"
                " WHERE pid = %s AND xact_start IS NOT NULL",
                (pid,),
            ).fetchone()
            if row is not None:
                ages.append(row[0])
    finally:
        stop.set()
        listener.join(5)
        sampler.close()
        backend.close()
    assert ages, "no notification was ever caught being read: the probe saw nothing"
    assert max(ages) < 2.5, f"the listener looked like a transaction {max(ages):.1f} s old"


def _insert_old_jobs(db: FaultDatabase, count: int) -> None:
    """`count` complete jobs that finished 3 days ago, spread over 6 hours, in bulk."""
    db.rows(
        "INSERT INTO roadie_jobs (queue, task, args, state, attempt, max_attempts, created_at,"
        " run_at, started_at, finished_at, result, attempts)"
        " SELECT 'default', 'work', '{}'::json, 'complete', 1, 10, t, t, t,"
        " t + interval '20 milliseconds', 'null'::json, '[]'::jsonb"
        " FROM (SELECT now() - interval '3 days' - mod(g, 21600) * interval '1 second' AS t"
        " FROM generate_series(1, ?) AS g) AS old",
        count,
    )


def test_f19_pruning_under_load(
    fault_db: FaultDatabase,
    tasks: App,
    supervisor: Callable[..., Supervisor],
    figures: Figures,
    long_form: bool,
) -> None:
    """Finished jobs older than the retention, pruned by the workers while they drain new
    jobs: all pruned (rolled up first), in batches of at most 10k, no slow statement, claims
    continue."""
    old, fresh = (1_000_000, 20_000) if long_form else (20_000, 1_500)
    fault_db.rows("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    _insert_old_jobs(fault_db, old)
    fault_db.rows("ANALYZE roadie_jobs")
    fault_db.rows("SELECT pg_stat_statements_reset()")
    ids = [job.id for job in tasks.get_task("work").enqueue_many([{"ms": 2, "ms_max": 10}] * fresh)]
    started = time.monotonic()
    sup = supervisor(
        workers=2,
        concurrency=4,
        lease="2s",
        sweep="0.5s",
        app=APP,
        extra_args=["--retention", "1d"],
    )
    wait_until(
        lambda: _old_left(fault_db) == 0,
        1800 if long_form else 120,
        "the old jobs pruned",
        interval=0.2,
    )
    pruned_in = time.monotonic() - started
    done_while_pruning = fault_db.terminal_count(ids)
    report = check_invariants(fault_db, ids, timeout=600 if long_form else 60, supervisor=sup)
    stats = fault_db.rows(
        "SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 60), calls, rows,"
        " max_exec_time, mean_exec_time FROM pg_stat_statements"
        " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND query ILIKE ? ORDER BY max_exec_time DESC",
        "%roadie_%",
    )
    deletes = [row for row in stats if row[0].startswith("-- Delete the jobs")]
    pruner = [row for row in stats if row[0].startswith(PRUNER_STATEMENTS)]
    rolled_up = fault_db.value(
        "SELECT coalesce(sum(jobs), 0) FROM roadie_rollups WHERE hour < now() - interval '1 day'"
    )
    slowest = pruner[0] if pruner else None
    figures.record(
        old_jobs=old,
        fresh_jobs=fresh,
        pruned_in_s=round(pruned_in, 1),
        completed_while_pruning=done_while_pruning,
        delete_calls=sum(row[1] for row in deletes),
        delete_rows=sum(row[2] for row in deletes),
        delete_max_ms=max((row[3] for row in deletes), default=None),
        slowest_pruner_statement=slowest,
        extra_executions=report.extra_executions,
    )
    print(f"F19: pruned {old} in {pruned_in:.1f}s; deletes {deletes}; slowest {slowest}")
    assert deletes, "the pruner deleted nothing"
    assert sum(row[2] for row in deletes) == old
    assert all(row[2] / row[1] <= 10_000 for row in deletes), "a delete batch over 10k rows"
    assert rolled_up == old, f"{rolled_up} pruned jobs rolled up, {old} pruned"
    assert sup.restarts == 0
    # A generous bound (the target is 1 s; the machine is shared and noisy): reported above.
    assert slowest is not None
    assert slowest[3] < 5_000


def _old_left(db: FaultDatabase) -> int:
    return db.value("SELECT count(*) FROM roadie_jobs WHERE finished_at < now() - interval '1 day'")
