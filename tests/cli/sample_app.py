"""A small task module for the CLI tests: `--app tests.cli.sample_app:app`."""

from __future__ import annotations

from roadie import App, Permanent

# No URL here: the tests always pass --database-url (or ROADIE_DATABASE_URL).
app = App()


@app.task(queue="content", priority=5)
def publish_video(ctx, video_id: int, title: str = ""):
    ctx.progress(0.5, "probing")
    return {"video_id": video_id, "title": title}


@app.task(queue="notifications", max_attempts=3)
def send_email(ctx, to: str, subject: str = "hello"):
    return {"sent": to}


@app.task(queue="notifications")
def bounce(ctx, to: str):
    # Rich markup characters in an error must be printed as they are, never interpreted.
    raise Permanent(f"mailbox [/var/mail/{to}] is full [bold] :warning:")
