"""`make demo` runs `roadie demo`; the small day must run to the end on both backends."""

from __future__ import annotations

import pytest

from roadie import App
from roadie.cli import main


def test_the_small_demo_runs_every_queue_to_the_end(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--small", "--database-url", db_url]) == 0
    out = capsys.readouterr().out
    assert "a platform day" in out
    with App(db_url) as app:
        jobs = app.admin.list_jobs(limit=10_000)
    assert {job.queue for job in jobs} == {
        "content",
        "indexing",
        "analytics",
        "segmentation",
        "notifications",
    }
    assert {job.state for job in jobs} == {"complete", "failed"}
    failed = [job for job in jobs if job.state == "failed"]
    assert failed and all(job.failure == "permanent" and "corrupt" in job.error for job in failed)
    retried = [job for job in jobs if job.queue == "notifications" and job.attempt == 2]
    assert retried and all(job.state == "complete" for job in retried)
