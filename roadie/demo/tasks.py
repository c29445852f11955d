"""A content platform's background work on roadie's five queues: `roadie demo` runs it.

content        publish_video checks an upload and spawns renditions, a thumbnail and a
               transcript; a callback records each one; when all are done the video is listed,
               indexed, and its creator told
indexing       index_video puts a published video in a full-text index (SQLite FTS5)
analytics      rollup_days spawns a rollup_day per day: an event log into a daily rollup;
               the segments are computed when all are done
segmentation   update_segment: an audience segment from the rollups, membership changes recorded
notifications  send_email renders an email and hands it to an SMTP relay

Every task may run more than once (a retry, a worker that died), so each writes its effects so
that a second run changes nothing: whole files replaced, rows keyed by what they describe,
follow-up jobs enqueued with an idempotency key, emails sent with a Message-ID naming the job.
`world` holds the generated inputs and where files go (`ROADIE_DEMO_DIR`).
"""

from __future__ import annotations

import csv
import io
import re
import smtplib
from collections import Counter, defaultdict
from email.message import EmailMessage
from typing import Any

from PIL import Image, ImageFilter, ImageOps

from roadie import App, Permanent, Transient
from roadie.demo import world

app = App()  # the database comes from --database-url, else ROADIE_DATABASE_URL

# -- content ------------------------------------------------------------------------------------


@app.task(queue="content", timeout="1m")
def publish_video(ctx, video_id: int, title: str, creator: int) -> dict:
    """Check the upload, then fan out: one job per rendition, a thumbnail, a transcript."""
    try:
        with Image.open(world.upload_path(video_id)) as frame:
            frame.verify()  # reads the whole file: a cut-off upload fails here
    except (OSError, SyntaxError) as exc:
        raise Permanent(f"upload video-{video_id}.png is corrupt: {exc}") from None
    for height in world.RENDITIONS:
        ctx.spawn(render, video_id=video_id, height=height)
    ctx.spawn(make_thumbnail, video_id=video_id)
    ctx.spawn(extract_transcript, video_id=video_id)
    return {"video_id": video_id, "title": title}


@publish_video.on_child_complete
def record_asset(ctx, child) -> None:
    """Once per child that ends (ctx.job is the publish job): record what it made."""
    if child.state != "complete":
        raise Permanent(f"{child.task} failed: {child.error}")  # fails the publish
    with world.database("catalog.db") as db:
        db.execute(
            "INSERT OR REPLACE INTO assets VALUES (:video_id, :name, :path, :width, :height, :bytes)",
            child.result,
        )


@publish_video.on_complete
def published(ctx) -> None:
    """Every child is done: list the video, then index it and tell its creator. The follow-up
    jobs' keys name this publish, so if this callback runs again nothing is enqueued twice."""
    video_id, title, creator = (ctx.job.args[k] for k in ("video_id", "title", "creator"))
    with world.database("catalog.db") as db:
        db.execute("INSERT OR REPLACE INTO videos VALUES (?, ?, ?)", (video_id, title, creator))
    index_video.options(idempotency_key=f"index-{ctx.job.id}").enqueue(
        video_id=video_id, title=title
    )
    send_email.options(priority=5, idempotency_key=f"live-{ctx.job.id}").enqueue(
        **email(creator, "video_live", title=title, renditions=len(world.RENDITIONS))
    )


@app.task(queue="content", timeout="1m")
def render(ctx, video_id: int, height: int) -> dict:
    """Resample the upload to one rendition's height (Lanczos filter)."""
    with Image.open(world.upload_path(video_id)) as frame:
        width = round(frame.width * height / frame.height)
        image = frame.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
    return save_jpeg(image, video_id, f"{height}p")


@app.task(queue="content", timeout="1m")
def make_thumbnail(ctx, video_id: int) -> dict:
    """A square crop of the frame's centre for the mobile grid, sharpened."""
    with Image.open(world.upload_path(video_id)) as frame:
        image = ImageOps.fit(frame.convert("RGB"), (240, 240)).filter(ImageFilter.SHARPEN)
    return save_jpeg(image, video_id, "thumbnail")


@app.task(queue="content", timeout="1m")
def extract_transcript(ctx, video_id: int) -> dict:
    """The words spoken, from the upload's WebVTT captions: no header, notes, timings or tags."""
    spoken = []
    for block in world.captions_path(video_id).read_text().split("\n\n"):
        lines = block.strip().splitlines()
        if lines and not lines[0].startswith(("WEBVTT", "NOTE")):
            spoken += [re.sub(r"<[^>]*>", "", line) for line in lines if "-->" not in line]
    text = " ".join(spoken).encode()
    path = world.media_dir(video_id) / "transcript.txt"
    world.write_atomically(path, text)
    return {"video_id": video_id, "name": "transcript", "path": str(path), "width": None,
            "height": None, "bytes": len(text)}  # fmt: skip


def save_jpeg(image: Image.Image, video_id: int, name: str) -> dict:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    path = world.media_dir(video_id) / f"{name}.jpg"
    world.write_atomically(path, buffer.getvalue())  # a retry replaces the whole file
    return {"video_id": video_id, "name": name, "path": str(path), "width": image.width,
            "height": image.height, "bytes": len(buffer.getvalue())}  # fmt: skip


# -- indexing -----------------------------------------------------------------------------------


@app.task(queue="indexing")
def index_video(ctx, video_id: int, title: str) -> dict:
    """Index the title and transcript, full text. The document's rowid is the video's id, so
    indexing a video again replaces its document."""
    transcript = (world.media_dir(video_id) / "transcript.txt").read_text()
    with world.database("search.db") as db:
        db.execute(
            "INSERT OR REPLACE INTO documents (rowid, title, transcript) VALUES (?, ?, ?)",
            (video_id, title, transcript),
        )
    return {"video_id": video_id, "words": len(transcript.split())}


# -- analytics ----------------------------------------------------------------------------------


@app.task(queue="analytics", priority=-5)
def rollup_days(ctx, days: list[str]) -> dict:
    """One child per day's event log; segments are computed once all are rolled up."""
    for day in days:
        ctx.spawn(rollup_day, day=day)
    return {"days": len(days)}


@rollup_days.on_complete
def rollups_done(ctx) -> None:
    for segment in world.SEGMENTS:
        update_segment.options(idempotency_key=f"{segment}-{ctx.job.id}").enqueue(
            segment=segment, days=ctx.job.args["days"]
        )


@app.task(queue="analytics", priority=-5)
def rollup_day(ctx, day: str) -> dict:
    """Count a day's events per video and per user, and the seconds watched."""
    videos: dict[str, Counter] = defaultdict(Counter)
    users: dict[str, Counter] = defaultdict(Counter)
    with world.event_log(day).open(newline="") as log:
        for row in csv.DictReader(log):
            for counts in (videos[row["video_id"]], users[row["user_id"]]):
                counts[row["event"]] += 1
                counts["watch_seconds"] += int(row["seconds"])
    world.write_json(world.rollup_path(day), {"day": day, "videos": videos, "users": users})
    return {"day": day, "videos": len(videos), "users": len(users)}


# -- segmentation -------------------------------------------------------------------------------


@app.task(queue="segmentation")
def update_segment(ctx, segment: str, days: list[str]) -> dict:
    """Recompute a segment from the rollups; record who joined and who left.

    The changes are keyed by this job's id, and the welcome emails read back from them: a
    retry after the commit finds nothing new to record and enqueues the same emails (same
    keys, so none twice)."""
    members = segment_members(segment, [world.read_json(world.rollup_path(d)) for d in days])
    run = ctx.job.id
    with world.database("catalog.db") as db:
        query = "SELECT user_id FROM segment_members WHERE segment = ?"
        before = {user for (user,) in db.execute(query, (segment,))}
        db.execute("DELETE FROM segment_members WHERE segment = ?", (segment,))
        db.executemany("INSERT INTO segment_members VALUES (?, ?)", [(segment, u) for u in members])
        changes = [(segment, run, user, "joined") for user in members - before]
        changes += [(segment, run, user, "left") for user in before - members]
        db.executemany("INSERT OR IGNORE INTO segment_changes VALUES (?, ?, ?, ?)", changes)
        query = "SELECT user_id, change FROM segment_changes WHERE segment = ? AND run = ?"
        recorded = db.execute(query, (segment, run)).fetchall()
    joined = sorted(user for user, change in recorded if change == "joined")
    if segment in world.WELCOME:
        for user in joined:
            send_email.options(idempotency_key=f"{segment}-{run}-{user}").enqueue(
                **email(user, world.WELCOME[segment])
            )
    return {"segment": segment, "members": len(members), "joined": len(joined),
            "left": len(recorded) - len(joined)}  # fmt: skip


def segment_members(segment: str, rollups: list[dict]) -> set[int]:
    """Who is in `segment`, from daily rollups (oldest first)."""
    active: dict[int, set[int]] = defaultdict(set)  # user -> the days (indexes) they were active
    totals: dict[int, Counter] = defaultdict(Counter)
    for day, rollup in enumerate(rollups):
        for user, counts in rollup["users"].items():
            active[int(user)].add(day)
            totals[int(user)].update(counts)
    recent = {len(rollups) - 2, len(rollups) - 1}
    if segment == "superfans":  # the top tenth by time watched
        ranked = sorted(totals, key=lambda u: (-totals[u]["watch_seconds"], u))
        return set(ranked[: len(ranked) // 10])
    if segment == "lapsing":  # active before, not in the last two days
        return {user for user, days in active.items() if not days & recent}
    if segment == "newcomers":  # active only in the last two days
        return {user for user, days in active.items() if days <= recent}
    if segment == "commenters":  # twice the comments of the average user, or more
        average = sum(counts["comment"] for counts in totals.values()) / max(len(totals), 1)
        return {user for user, counts in totals.items() if counts["comment"] >= 2 * average}
    raise Permanent(f"unknown segment {segment!r}")


# -- notifications ------------------------------------------------------------------------------


@app.task(queue="notifications", retry_on=(smtplib.SMTPServerDisconnected,))
def send_email(ctx, to: str, template: str, data: dict) -> dict:
    """Render an email and send it through the SMTP relay: 4xx replies are retried, 5xx fail.
    The Message-ID names this job, so the relay keeps one copy however often it is sent."""
    subject, body = world.EMAILS[template]
    message = EmailMessage()
    message["From"], message["To"] = world.SENDER, to
    message["Subject"] = subject.format(**data)
    message["Message-ID"] = f"<{template}.{ctx.job.id}@roadie-demo.localhost>"
    message.set_content(body.format(**data))
    try:
        with smtplib.SMTP(*world.smtp_relay(), timeout=10) as relay:
            relay.send_message(message)
    except smtplib.SMTPRecipientsRefused as exc:  # the relay refused the (only) recipient
        [(code, reply)] = exc.recipients.values()
        raise smtp_error(code, reply) from None
    except smtplib.SMTPResponseException as exc:
        raise smtp_error(exc.smtp_code, exc.smtp_error) from None
    return {"message_id": message["Message-ID"]}


def smtp_error(code: int, reply: bytes) -> Exception:
    text = f"SMTP {code} {reply.decode(errors='replace')}"
    return Transient(text) if 400 <= code < 500 else Permanent(text)


def email(user: int, template: str, **data: Any) -> dict:
    """send_email's arguments for an email to `user`."""
    return {"to": world.address(user), "template": template,
            "data": {"name": world.name(user), **data}}  # fmt: skip


# -- a day's work -------------------------------------------------------------------------------


def enqueue_day(plan: world.Plan, days: list[str]) -> None:
    """What a day brings: uploads (partners' first), the nightly analytics, and emails (password
    resets before everything, the digest after everything)."""
    uploads = [
        {"video_id": v, "title": world.title(v), "creator": world.creator(plan, v)}
        for v in range(1, plan.videos + 1)
    ]
    publish_video.options(priority=10).enqueue_many(u for u in uploads if u["video_id"] % 4 == 0)
    publish_video.enqueue_many(u for u in uploads if u["video_id"] % 4)
    rollup_days.enqueue(days=days)
    send_email.options(priority=50).enqueue_many(
        email(u, "password_reset", code=f"{u * 7919 % 1_000_000:06d}")
        for u in range(5, plan.users + 1, 16)
    )
    picks = "\n".join(f"- {world.title(v)}" for v in range(1, min(plan.videos, 5) + 1))
    send_email.options(priority=-10).enqueue_many(
        email(u, "digest", picks=picks) for u in world.subscribers(plan)
    )
