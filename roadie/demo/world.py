"""The demo's world: its users, uploads and event logs, generated the same way every time, and
the folder where the platform keeps its files (uploads, media, rollups, outbox, databases).

Everything here is deterministic, so a test can generate the same inputs again and check what
the tasks made of them. The folder is `ROADIE_DEMO_DIR` (set by `roadie demo`), else
`./roadie-demo`.
"""

from __future__ import annotations

import csv
import json
import os
import random
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont, ImageOps


@dataclass(frozen=True)
class Plan:
    """How big a platform day is."""

    videos: int  # uploads to publish (ids 1..videos)
    users: int  # ids 1..users
    days: int  # days of event log to roll up
    events_per_day: int


SMALL = Plan(videos=8, users=40, days=3, events_per_day=1_500)
FULL = Plan(videos=48, users=400, days=28, events_per_day=5_000)

RENDITIONS = (480, 360, 240)  # heights resampled from each 720p upload
SEGMENTS = ("superfans", "lapsing", "newcomers", "commenters")
GREYLISTING = "slowmail.example"  # this provider's relay refuses a first delivery (450)
CLOSED = "closed.example"  # mailboxes that no longer exist (550)
SENDER = "Roadie Video <noreply@roadie-demo.localhost>"

# -- the broken inputs, on purpose --------------------------------------------------------------


def is_corrupt(video_id: int) -> bool:
    """This upload was cut off halfway (a truncated PNG): publishing it fails for good."""
    return video_id % 17 == 3


def address(user_id: int) -> str:
    """The user's email address; some are at a provider that greylists, some are closed."""
    if user_id % 23 == 7:
        domain = CLOSED
    elif user_id % 3 == 1:
        domain = GREYLISTING
    else:
        domain = "mail.example"
    return f"{name(user_id).lower()}.{user_id}@{domain}"


# -- users and videos ---------------------------------------------------------------------------

NAMES = ("Ada", "Bo", "Chen", "Dara", "Eli", "Farah", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lea")
ADJECTIVES = ("Quick", "Honest", "Slow", "Tiny", "Midnight", "Rainy", "Weekend", "Budget", "Silent")
TOPICS = ("sourdough", "bicycle", "origami", "espresso", "kayak", "bonsai", "chess", "ramen")
FORMATS = ("tutorial", "review", "vlog", "masterclass", "challenge", "diary", "teardown")


def name(user_id: int) -> str:
    return NAMES[user_id % len(NAMES)]


def title(video_id: int) -> str:
    adjective = ADJECTIVES[video_id % len(ADJECTIVES)]
    topic = TOPICS[(video_id * 3) % len(TOPICS)]
    return f"{adjective} {topic} {FORMATS[(video_id * 5) % len(FORMATS)]} #{video_id}"


def creator(plan: Plan, video_id: int) -> int:
    return (video_id * 7) % plan.users + 1


def subscribers(plan: Plan) -> list[int]:
    """Users who get the daily digest."""
    return [u for u in range(1, plan.users + 1) if u % 2 == 0]


def dates(plan: Plan, today: date) -> list[str]:
    """The days whose event logs are rolled up, oldest first (ISO dates)."""
    return [(today - timedelta(days=n)).isoformat() for n in range(plan.days, 0, -1)]


# -- mail ----------------------------------------------------------------------------------------

EMAILS = {  # template: (subject, body), filled in with the job's `data`
    "video_live": (
        "Your video is live: {title}",
        'Hi {name},\n\n"{title}" is published, in {renditions} sizes.\n\nThe Roadie team',
    ),
    "digest": ("Your daily digest", "Hi {name},\n\nPicked for you today:\n{picks}\n"),
    "password_reset": (
        "Reset your password",
        "Hi {name},\n\nYour code is {code}. It expires in 15 minutes.",
    ),
    "we_miss_you": ("We miss you, {name}", "Hi {name},\n\nA lot happened since your visit."),
    "superfan": ("You are a superfan, {name}!", "Hi {name},\n\nYou watched more than most."),
}
WELCOME = {"lapsing": "we_miss_you", "superfans": "superfan"}  # emails to users joining these


def smtp_relay() -> tuple[str, int]:
    """Where the demo's SMTP relay listens: `ROADIE_DEMO_SMTP` (host:port), set by roadie demo."""
    host, _, port = os.environ.get("ROADIE_DEMO_SMTP", "127.0.0.1:8025").rpartition(":")
    return host, int(port)


# -- the folder ---------------------------------------------------------------------------------


def workdir() -> Path:
    return Path(os.environ.get("ROADIE_DEMO_DIR", "roadie-demo")).resolve()


def upload_path(video_id: int) -> Path:
    return workdir() / "uploads" / f"video-{video_id}.png"


def captions_path(video_id: int) -> Path:
    return workdir() / "uploads" / f"video-{video_id}.vtt"


def media_dir(video_id: int) -> Path:
    path = workdir() / "media" / f"video-{video_id}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def event_log(day: str) -> Path:
    return workdir() / "events" / f"{day}.csv"


def rollup_path(day: str) -> Path:
    return workdir() / "rollups" / f"{day}.json"


def outbox() -> Path:
    return workdir() / "outbox"


def write_atomically(path: Path, data: bytes) -> None:
    """Write a whole file or nothing: a retried task rewrites it, readers never see half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    partial.write_bytes(data)
    os.replace(partial, path)


def write_json(path: Path, value: Any) -> None:
    write_atomically(path, json.dumps(value, sort_keys=True).encode())


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


SCHEMAS = {
    "catalog.db": """
        CREATE TABLE IF NOT EXISTS videos (
            video_id INTEGER PRIMARY KEY, title TEXT NOT NULL, published_by INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS assets (
            video_id INTEGER, name TEXT, path TEXT, width INTEGER, height INTEGER, bytes INTEGER,
            PRIMARY KEY (video_id, name));
        CREATE TABLE IF NOT EXISTS segment_members (
            segment TEXT, user_id INTEGER, PRIMARY KEY (segment, user_id));
        CREATE TABLE IF NOT EXISTS segment_changes (
            segment TEXT, run INTEGER, user_id INTEGER, change TEXT,
            PRIMARY KEY (segment, run, user_id));
    """,
    "search.db": """
        CREATE VIRTUAL TABLE IF NOT EXISTS documents USING fts5(title, transcript);
    """,
}


@contextmanager
def database(name: str) -> Iterator[sqlite3.Connection]:
    """One transaction on the platform's own SQLite database `name` (catalog.db, search.db),
    committed when the block ends, rolled back if it raises."""
    path = workdir() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(SCHEMAS[name])
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    finally:
        conn.close()


# -- generated inputs ---------------------------------------------------------------------------


def make_upload(video_id: int) -> None:
    """A 1280x720 poster frame with the video's title, and its captions (WebVTT)."""
    rng = random.Random(f"upload-{video_id}")
    shade = Image.linear_gradient("L").rotate(rng.choice((0, 90, 180, 270))).resize((1280, 720))
    frame = ImageOps.colorize(shade, black=_colour(rng, 0, 90), white=_colour(rng, 150, 255))
    draw = ImageDraw.Draw(frame)
    draw.ellipse((900, 120, 1180, 400), fill=_colour(rng, 60, 220))
    draw.text((80, 560), title(video_id), font=ImageFont.load_default(size=56), fill="white")
    path = upload_path(video_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.save(path, "PNG", compress_level=1)
    if is_corrupt(video_id):  # the upload was cut off halfway
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    captions_path(video_id).write_text(captions(video_id))


def _colour(rng: random.Random, low: int, high: int) -> tuple[int, int, int]:
    return (rng.randint(low, high), rng.randint(low, high), rng.randint(low, high))


def captions(video_id: int) -> str:
    """What is said in the video, as WebVTT cues (timings, voice tags, a styling note)."""
    rng = random.Random(f"captions-{video_id}")
    topic = TOPICS[(video_id * 3) % len(TOPICS)]
    lines = [
        f"Welcome back, today it is all about {topic}.",
        f"First the basics: why {topic} needs patience.",
        f"Here is a mistake everyone makes with {topic}.",
        f"Let us try the {rng.choice(ADJECTIVES).lower()} approach.",
        "If you liked this, subscribe for more.",
    ]
    cues = ["WEBVTT", "", "NOTE generated by roadie demo", ""]
    for n, line in enumerate(lines):
        cues += [f"00:00:{n * 4:02d}.000 --> 00:00:{n * 4 + 3:02d}.500", f"<v Host>{line}</v>", ""]
    return "\n".join(cues)


def events(plan: Plan, day: str, recent: bool) -> list[dict[str, Any]]:
    """The day's event log: views (with seconds watched), likes, comments, shares.

    Some users lapse (no event in the last two days); others are new (only in them)."""
    rng = random.Random(f"events-{day}-{plan.users}-{plan.videos}-{plan.events_per_day}")
    newcomer = plan.users - plan.users // 10  # ids above it joined two days ago
    active = [
        u
        for u in range(1, plan.users + 1)
        if (not recent or u % 9 != 4) and (recent or u <= newcomer)
    ]
    weights = [1 + (u * 37 % 11) for u in active]  # some users watch far more than others
    count = plan.events_per_day
    users = rng.choices(active, weights, k=count)
    kinds = rng.choices(("view", "like", "comment", "share"), (80, 12, 5, 3), k=count)
    log = []
    for n, (user_id, kind) in enumerate(zip(users, kinds, strict=True)):
        log.append(
            {
                "time": f"{day}T{n * 24 // count:02d}:00:00Z",
                "user_id": user_id,
                "video_id": rng.randint(1, plan.videos),
                "event": kind,
                "seconds": rng.randint(5, 900) if kind == "view" else 0,
            }
        )
    return log


def write_event_log(plan: Plan, day: str, recent: bool) -> None:
    path = event_log(day)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, ["time", "user_id", "video_id", "event", "seconds"])
        writer.writeheader()
        writer.writerows(events(plan, day, recent))


def yesterdays_segments(plan: Plan) -> dict[str, set[int]]:
    """Segment membership as it stood before today's run."""
    rng = random.Random(f"segments-{plan.users}")
    return {s: {u for u in range(1, plan.users + 1) if rng.random() < 0.08} for s in SEGMENTS}


def prepare(plan: Plan, days: list[str]) -> None:
    """Lay out the day's inputs: uploads, event logs, yesterday's segments."""
    for video_id in range(1, plan.videos + 1):
        make_upload(video_id)
    for day in days:
        write_event_log(plan, day, recent=day in days[-2:])
    with database("catalog.db") as db:
        for segment, members in yesterdays_segments(plan).items():
            db.executemany(
                "INSERT INTO segment_members VALUES (?, ?)", [(segment, u) for u in members]
            )
    with database("search.db"):
        pass
    outbox().mkdir(parents=True, exist_ok=True)


def search(query: str, limit: int = 5) -> list[tuple[int, str]]:
    """(video id, title) of the published videos best matching an FTS5 query."""
    with database("search.db") as db:
        rows = db.execute(
            "SELECT rowid, title FROM documents WHERE documents MATCH ? ORDER BY rank LIMIT ?",
            (query, limit),
        )
        return [(int(video_id), text) for video_id, text in rows]
