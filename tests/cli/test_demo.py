"""`roadie demo --small` on both backends: the day runs to its end, and each queue's work is
checked against the inputs, generated again here from `roadie.demo.world`."""

from __future__ import annotations

import email
import mailbox
import smtplib
from collections import Counter, defaultdict
from email.message import EmailMessage
from pathlib import Path

import pytest
from PIL import Image

from roadie import App, Job, Permanent, Transient
from roadie.demo import smtp, world
from roadie.demo.smtp import RelayServer
from roadie.demo.tasks import segment_members, smtp_error

PLAN = world.SMALL
ASSETS = {"480p": (853, 480), "360p": (640, 360), "240p": (427, 240), "thumbnail": (240, 240)}


def test_the_small_demo_does_a_platform_day(
    roadie, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On SQLite the demo's folder is the default, beside the database file (tmp_path/roadie.db);
    # PostgreSQL is told where.
    demo_dir = tmp_path / "roadie"
    monkeypatch.delenv("ROADIE_DEMO_DIR", raising=False)
    extra = ["--workdir", str(demo_dir)] if db_url.startswith("postgresql") else []
    run = roadie("demo", "--small", "--database-url", db_url, *extra)
    assert run.code == 0, run.out + run.err
    assert (demo_dir / "workers.log").exists()
    monkeypatch.setenv("ROADIE_DEMO_DIR", str(demo_dir))  # where `world` looks, here too
    assert "a platform day in" in run.out
    assert f"roadie failures --database-url {db_url}" in run.out
    with App(db_url) as app:
        jobs = app.admin.list_jobs(limit=10_000)
        children = {j.id: app.get_job(j.id).children for j in jobs if j.task == "publish_video"}
    tasks: dict[str, list[Job]] = defaultdict(list)
    for job in jobs:
        tasks[job.task].append(job)

    # Exactly the broken inputs failed, for good, flagged for review; every other job completed.
    assert {job.state for job in jobs} == {"complete", "failed"}
    failed = {job.id for job in jobs if job.state == "failed"}
    corrupt = {j.id for j in tasks["publish_video"] if world.is_corrupt(j.args["video_id"])}
    bounced = {j.id for j in tasks["send_email"] if j.args["to"].endswith("@" + world.CLOSED)}
    assert corrupt and bounced and failed == corrupt | bounced
    for job in jobs:
        if job.id in corrupt:
            assert (job.failure, job.needs_review) == ("permanent", True)
            assert f"video-{job.args['video_id']}.png is corrupt" in job.error
        if job.id in bounced:
            assert (job.failure, job.needs_review) == ("permanent", True)
            assert "550" in job.error and job.attempt == 1

    # content: every sound upload published, each rendition recorded by the callback.
    published = {j.args["video_id"]: j for j in tasks["publish_video"] if j.id not in corrupt}
    assert len(published) + len(corrupt) == PLAN.videos
    with world.database("catalog.db") as db:
        assets = db.execute("SELECT video_id, name, path, width, height, bytes FROM assets")
        recorded = {(v, name): (Path(p), w, h, n) for v, name, p, w, h, n in assets}
        listed = dict(db.execute("SELECT video_id, title FROM videos"))
    assert {v for v, _ in recorded} == set(published)
    assert listed == {v: world.title(v) for v in published}
    for video_id, publish in published.items():
        assert publish.state == "complete"
        assert Counter(child.task for child in children[publish.id]) == {
            "render": 3, "make_thumbnail": 1, "extract_transcript": 1
        }  # fmt: skip
        assert {child.state for child in children[publish.id]} == {"complete"}
        callbacks = [j for j in tasks["record_asset"] if j.parent_id == publish.id]
        assert sorted(j.args["child_id"] for j in callbacks) == sorted(
            c.id for c in children[publish.id]
        )
        for name, size in ASSETS.items():
            path, width, height, length = recorded[video_id, name]
            assert (width, height) == size and path.stat().st_size == length
            with Image.open(path) as image:
                assert image.size == size
        path, _, _, _ = recorded[video_id, "transcript"]
        assert path.read_text().startswith("Welcome back, today it is all about")
        assert "-->" not in path.read_text() and "<v" not in path.read_text()

    # indexing: the full-text index finds each published title, and no corrupt upload.
    for video_id in published:
        assert video_id in [v for v, _ in world.search(f'"{world.title(video_id)}"')]
    for job in tasks["publish_video"]:
        if job.id in corrupt:
            assert world.search(f'"{job.args["title"]}"') == []
    assert len(world.search("patience", limit=100)) == len(published)  # said in every video

    # analytics: each daily rollup holds the counts of that day's generated events.
    [parent] = tasks["rollup_days"]
    days = parent.args["days"]
    assert len(days) == PLAN.days and len(tasks["rollup_day"]) == PLAN.days
    rollups = []
    for day in days:
        expected: dict[str, dict[str, Counter[str]]] = {"videos": {}, "users": {}}
        for event in world.events(PLAN, day, recent=day in days[-2:]):
            for kind, key in (("videos", "video_id"), ("users", "user_id")):
                counts = expected[kind].setdefault(str(event[key]), Counter(watch_seconds=0))
                counts[event["event"]] += 1
                counts["watch_seconds"] += event["seconds"]
        rollup = world.read_json(world.rollup_path(day))
        assert rollup == {"day": day, **expected}
        rollups.append(rollup)

    # segmentation: members from the rollups; who joined and who left since yesterday.
    yesterday = world.yesterdays_segments(PLAN)
    with world.database("catalog.db") as db:
        members = db.execute("SELECT segment, user_id FROM segment_members").fetchall()
        changes = db.execute("SELECT segment, user_id, change FROM segment_changes").fetchall()
    for segment in world.SEGMENTS:
        now = segment_members(segment, rollups)
        assert {u for s, u in members if s == segment} == now
        joined = {u for s, u, c in changes if s == segment and c == "joined"}
        left = {u for s, u, c in changes if s == segment and c == "left"}
        assert (joined, left) == (now - yesterday[segment], yesterday[segment] - now)
        if segment in world.WELCOME:
            welcomed = [j.args["to"] for j in tasks["send_email"]
                        if j.args["template"] == world.WELCOME[segment]]  # fmt: skip
            assert sorted(welcomed) == sorted(world.address(u) for u in joined)
    assert any(c == "joined" for *_, c in changes) and any(c == "left" for *_, c in changes)

    # notifications: one email in the outbox per delivered notification, despite the retries.
    sent = {j.result["message_id"]: j for j in tasks["send_email"] if j.state == "complete"}
    outbox = [email.message_from_bytes(m.as_bytes()) for m in mailbox.Maildir(demo_dir / "outbox")]
    assert Counter(m["Message-ID"] for m in outbox) == Counter(set(sent))
    for message in outbox:
        assert message["To"] == sent[message["Message-ID"]].args["to"]
    live = [j.args["to"] for j in tasks["send_email"] if j.args["template"] == "video_live"]
    assert sorted(live) == sorted(world.address(world.creator(PLAN, v)) for v in published)
    retried = [j for j in sent.values() if j.attempt == 2]
    first_errors = " ".join(j.attempts[0]["error"] for j in retried)
    assert "450 4.7.1 greylisted" in first_errors  # refused the first time
    assert "451 4.4.2" in first_errors  # stored the first time, then sent again


def test_the_demo_leaves_a_database_holding_other_jobs_alone(roadie, db_url: str) -> None:
    with App(db_url) as app:

        @app.task(queue="billing")
        def charge(ctx, invoice: int) -> None: ...

        charge.enqueue(invoice=1)
    run = roadie("demo", "--small", "--database-url", db_url)
    assert run.code == 2 and run.err.count("\n") == 1
    assert "holds jobs of other tasks (charge)" in run.err
    with App(db_url) as app:
        assert [job.task for job in app.admin.list_jobs()] == ["charge"]


def test_the_relay_greylists_refuses_and_keeps_one_copy_per_message(tmp_path: Path) -> None:
    def send(relay: RelayServer, to: str, message_id: str) -> None:
        message = EmailMessage()
        message["From"], message["To"], message["Message-ID"] = world.SENDER, to, message_id
        message.set_content("hello")
        with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as client:
            client.send_message(message)

    def address(name: str, domain: str, times_out: bool) -> str:
        return next(
            f"{name}.{n}@{domain}"
            for n in range(100)
            if smtp.times_out(f"{name}.{n}@{domain}") == times_out
        )

    slow, closed = address("ada", world.GREYLISTING, False), f"bo.7@{world.CLOSED}"
    plain, unconfirmed = (
        address("chen", "mail.example", False),
        address("eli", "mail.example", True),
    )
    with RelayServer(tmp_path / "outbox") as relay:
        with pytest.raises(smtplib.SMTPRecipientsRefused, match="450"):
            send(relay, slow, "<a@x>")
        send(relay, slow, "<a@x>")
        with pytest.raises(smtplib.SMTPRecipientsRefused, match="550"):
            send(relay, closed, "<b@x>")
        for _ in range(3):
            send(relay, plain, "<c@x>")
        with pytest.raises(smtplib.SMTPDataError, match="451"):
            send(relay, unconfirmed, "<d@x>")  # stored, not confirmed
        send(relay, unconfirmed, "<d@x>")
        counts = dict(relay.counts)
    ids = Counter(m["Message-ID"] for m in mailbox.Maildir(tmp_path / "outbox"))
    assert ids == {"<a@x>": 1, "<c@x>": 1, "<d@x>": 1}
    assert counts == {
        "greylisted": 1,
        "refused": 1,
        "delivered": 3,
        "duplicates": 3,
        "unconfirmed": 1,
    }
    # ...and a relay started again on the same outbox still knows what it delivered.
    with RelayServer(tmp_path / "outbox") as relay:
        send(relay, plain, "<c@x>")
    assert len(mailbox.Maildir(tmp_path / "outbox")) == 3
    assert isinstance(smtp_error(451, b"later"), Transient)
    assert isinstance(smtp_error(550, b"gone"), Permanent)
