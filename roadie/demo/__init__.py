"""A small day of the content platform on the five queues (the full demo comes later).

Every task does a little real work; some inputs are broken on purpose (a permanent failure) and
the mail relay refuses some messages the first time (a transient failure, retried).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter

from rich.console import Console
from rich.table import Table

from roadie import App, Backoff, Permanent, Transient

app = App()
QUICK = Backoff(base="100ms", cap="1s")


@app.task(queue="content", timeout="1m", backoff=QUICK)
def make_thumbnail(ctx, video_id: int, size: int) -> dict:
    """Downsample a generated frame (a size x size grid of pixels) by averaging 4x4 blocks."""
    if video_id % 23 == 0:
        raise Permanent(f"upload {video_id} is corrupt: no video stream")
    frame = [[(x * video_id + y) % 256 for x in range(size)] for y in range(size)]
    small = [
        [
            sum(frame[y + dy][x + dx] for dy in range(4) for dx in range(4)) // 16
            for x in range(0, size, 4)
        ]
        for y in range(0, size, 4)
    ]
    ctx.progress(1.0, "thumbnail ready")
    return {"video_id": video_id, "width": len(small[0]), "checksum": sum(map(sum, small))}


@app.task(queue="indexing", backoff=QUICK)
def index_document(ctx, doc_id: int, text: str) -> dict:
    terms = Counter(word.strip(".,").lower() for word in text.split())
    return {"doc_id": doc_id, "terms": len(terms), "top": terms.most_common(1)[0][0]}


@app.task(queue="analytics", backoff=QUICK)
def rollup_events(ctx, day: int, events: int) -> dict:
    counts = Counter(
        int(hashlib.sha1(f"{day}:{i}".encode()).hexdigest(), 16) % 24 for i in range(events)
    )
    return {"day": day, "busiest_hour": counts.most_common(1)[0][0], "events": events}


@app.task(queue="segmentation", backoff=QUICK)
def compute_segment(ctx, segment: str, users: int) -> dict:
    members = [u for u in range(users) if hashlib.md5(f"{segment}{u}".encode()).digest()[0] < 64]
    return {"segment": segment, "members": len(members)}


@app.task(queue="notifications", backoff=QUICK)
def send_email(ctx, user_id: int) -> dict:
    if user_id % 7 == 0 and ctx.job.attempt == 1:
        raise Transient("421 mail relay busy, try again later")
    return {"user_id": user_id, "message_id": hashlib.sha1(str(user_id).encode()).hexdigest()[:12]}


def enqueue_day(scale: int) -> int:
    jobs = make_thumbnail.enqueue_many([{"video_id": v, "size": 64} for v in range(1, 4 * scale)])
    jobs += index_document.enqueue_many(
        [
            {"doc_id": d, "text": f"Video {d} about cooking, travel and cooking again"}
            for d in range(3 * scale)
        ]
    )
    jobs += rollup_events.options(priority=5).enqueue_many(
        [{"day": d, "events": 500} for d in range(scale)]
    )
    jobs += compute_segment.enqueue_many(
        [{"segment": f"segment-{s}", "users": 2000} for s in range(scale)]
    )
    jobs += send_email.enqueue_many([{"user_id": u} for u in range(1, 5 * scale)])
    return len(jobs)


def run_demo(database_url: str, small: bool = False) -> int:
    """Migrate a fresh database, enqueue a day, drain it with a burst worker, print a summary."""
    out = Console()
    if database_url.startswith("sqlite:///"):
        for suffix in ("", "-wal", "-shm"):
            path = database_url[len("sqlite:///") :] + suffix
            if os.path.exists(path):
                os.remove(path)
    app.use_database(database_url)
    app.migrate()
    count = enqueue_day(10 if small else 60)
    out.print(f"enqueued {count} jobs on content, indexing, analytics, segmentation, notifications")
    started = time.monotonic()
    while app.admin.list_jobs(state="pending", limit=1):
        app.run_worker(concurrency=8, burst=True, poll_interval="50ms")
        time.sleep(0.1)  # retried jobs wait out their backoff before they are due again
    elapsed = time.monotonic() - started
    summary(out, elapsed)
    app.close()
    return 0


def summary(out: Console, elapsed: float) -> None:
    jobs = app.admin.list_jobs(limit=10_000)
    table = Table(
        "queue", "complete", "failed", "retries", title=f"a platform day in {elapsed:.1f}s"
    )
    for queue in sorted({job.queue for job in jobs}):
        mine = [job for job in jobs if job.queue == queue]
        table.add_row(
            queue,
            str(sum(job.state == "complete" for job in mine)),
            str(sum(job.state == "failed" for job in mine)),
            str(sum(job.attempt - 1 for job in mine if job.attempt > 1)),
        )
    out.print(table)
    out.print(f"explore: roadie jobs list --state failed --database-url {app.database_url}")
