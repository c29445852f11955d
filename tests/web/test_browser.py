"""The dashboard in real headless Chromium (Debian's, driven by Playwright), against a real
`roadie dashboard` server on a seeded database, on both backends.

Each page is screenshotted under tests/artifacts/<backend>/ (ignored by git) for a person to look
at. Every test fails on a console error (a CSP violation is one) or an uncaught script error.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from roadie import App
from tests.web.browser_helpers import (
    ARTIFACTS,
    HOSTILE,
    OVERFLOW_SCRIPT,
    ConsoleWatch,
    Dashboard,
    Seeded,
    chromium_path,
    require_playwright,
    seed,
)

EXPECT_TIMEOUT = 15_000  # ms: generous on a loaded 2-core machine; passing tests never wait it
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 800}


@dataclass
class Site:
    backend: str
    url: str  # the database
    base_url: str  # the dashboard
    jobs: Seeded
    server: Dashboard

    def admin_app(self) -> App:
        return App(self.url)


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    require_playwright()
    executable = chromium_path()
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=EXPECT_TIMEOUT)
    with sync_playwright() as playwright:  # stopping the driver ends the browser too
        browser = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    """A seeded database and a dashboard serving it, for this module's tests on one backend."""
    tmp = tmp_path_factory.mktemp(f"browser-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite:///{tmp / 'roadie.db'}"
        with App(url) as app:
            app.migrate()
    else:
        url = request.getfixturevalue("pg_server_url")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "TRUNCATE roadie_jobs, roadie_workers, roadie_queues, roadie_audit RESTART IDENTITY"
            )
    jobs = seed(url)
    try:
        server = Dashboard(url, tmp / "dashboard.log").start()
        try:
            yield Site(request.param, url, server.base_url, jobs, server)
        finally:
            server.stop()
    finally:
        jobs.stop()


@pytest.fixture
def watched(
    browser: Any, site: Site, request: pytest.FixtureRequest
) -> Iterator[tuple[Any, ConsoleWatch]]:
    """A page in a fresh browser context, its console watched; dialogs are accepted. The test
    fails on any console error, unless it already failed on its own."""
    failed_before = request.session.testsfailed
    context = browser.new_context(base_url=site.base_url, viewport=DESKTOP)
    context.set_default_timeout(EXPECT_TIMEOUT)
    try:
        page = context.new_page()
        watch = ConsoleWatch(page)
        yield page, watch
        errors = list(watch.errors)
    finally:
        context.close()
    if errors and request.session.testsfailed == failed_before:
        pytest.fail("the browser reported errors:\n" + "\n".join(errors), pytrace=False)


@pytest.fixture
def page(watched: tuple[Any, ConsoleWatch]) -> Any:
    return watched[0]


def shoot(page: Any, site: Site, name: str) -> Path:
    """A full-page screenshot at tests/artifacts/<backend>/<name>.png."""
    path = ARTIFACTS / site.backend / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path


def visit(page: Any, site: Site, path: str) -> None:
    """Open `path`; it must answer 200 with a <main> and a nav."""
    from playwright.sync_api import expect

    response = page.goto(path)
    status = response.status if response is not None else None
    assert status == 200, f"GET {path} answered {status}; the server's log:\n{site.server.log()}"
    expect(page.locator("main")).to_be_visible()
    expect(page.locator("nav").first).to_be_visible()


def pages_of(site: Site) -> dict[str, str]:
    """Every page, by the name its screenshot takes."""
    return {
        "overview": "/",
        "jobs": "/jobs",
        "job-parent": f"/jobs/{site.jobs.parent}",
        "job-failed": f"/jobs/{site.jobs.failed[1]}",
        "job-running": f"/jobs/{site.jobs.running}",
        "job-scheduled": f"/jobs/{site.jobs.scheduled}",
        "job-hostile-args": f"/jobs/{site.jobs.hostile}",
        "queues": "/queues",
        "workers": "/workers",
        "locks": "/locks",
        "failures": "/failures",
        "review": "/review",
        "audit": "/audit",
    }


def row_ids(page: Any) -> set[int]:
    return {
        int(i)
        for i in page.locator("tr[data-job-id]").evaluate_all(
            "rows => rows.map(r => r.dataset.jobId)"
        )
    }


# -- the tests -------------------------------------------------------------------------------


def test_every_page_renders_without_console_errors_and_is_screenshotted(
    page: Any, site: Site
) -> None:
    for name, path in pages_of(site).items():
        visit(page, site, path)
        shoot(page, site, name)


def test_the_overview_shows_a_block_per_queue(page: Any, site: Site) -> None:
    from playwright.sync_api import expect

    visit(page, site, "/")
    for queue in ("content", "email", "search", "slow"):
        expect(page.locator(f'[data-queue="{queue}"]')).to_be_visible()


def test_filtering_the_jobs_list_by_state_shows_only_failed_jobs(page: Any, site: Site) -> None:
    from playwright.sync_api import expect

    visit(page, site, "/jobs")
    expect(page.locator("tr[data-job-id]").first).to_be_visible()
    assert len(row_ids(page)) > len(site.jobs.failed)  # more than the failed ones, unfiltered
    state = page.locator('form#filters [name="state"]')
    if state.evaluate("el => el.tagName") == "SELECT":
        state.select_option("failed")
    else:
        state.fill("failed")
    page.locator("form#filters").get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"[?&]state=failed(&|$)"))
    with site.admin_app() as app:
        failed = {job.id for job in app.admin.list_jobs(state="failed")}
    expect(page.locator("tr[data-job-id]")).to_have_count(len(failed))
    assert row_ids(page) == failed
    assert set(site.jobs.failed) | {site.jobs.review} <= failed


def test_a_parent_job_links_to_its_children(page: Any, site: Site) -> None:
    from playwright.sync_api import expect

    visit(page, site, f"/jobs/{site.jobs.parent}")
    expect(page.locator("#job-state")).to_contain_text("complete")
    for child in site.jobs.children:
        expect(page.locator(f'main a[href="/jobs/{child}"]').first).to_be_visible()
    child = site.jobs.children[0]
    page.locator(f'main a[href="/jobs/{child}"]').first.click()
    expect(page).to_have_url(re.compile(rf"/jobs/{child}$"))
    expect(page.locator("#job-state")).to_contain_text("complete")
    # ... and the child links back to its parent
    expect(page.locator(f'main a[href="/jobs/{site.jobs.parent}"]').first).to_be_visible()


def test_retrying_a_failed_job_from_its_page_makes_it_pending(page: Any, site: Site) -> None:
    from playwright.sync_api import expect

    job_id = site.jobs.failed[0]
    visit(page, site, f"/jobs/{job_id}")
    expect(page.locator("#job-state")).to_contain_text("failed")
    expect(page.locator("main")).to_contain_text("ConnectionRefusedError")  # the traceback
    form = page.locator(f'form[action="/jobs/{job_id}/retry"]')
    form.get_by_role("button", name="Retry").click()
    expect(page.locator("#notice")).to_be_visible()
    expect(page.locator("#job-state")).to_contain_text("pending")
    # What the failed attempt left is labelled as the last attempt's, not shown as current.
    labels = page.locator("dl.facts dt").all_inner_texts()
    assert {"last error", "last attempt started", "last attempt ran"} <= set(labels), labels
    assert not {"error", "started", "run time"} & set(labels), labels
    expect(page.locator("dt:text-is('last error') + dd")).to_contain_text("ConnectionRefusedError")
    shoot(page, site, "job-retried")
    with site.admin_app() as app:
        assert app.get_job(job_id).state == "pending"


def test_pausing_a_queue_shows_it_paused_and_pauses_it(page: Any, site: Site) -> None:
    from playwright.sync_api import expect

    visit(page, site, "/queues")
    page.locator('form[action="/queues/search/pause"]').get_by_role("button", name="Pause").click()
    expect(page.locator("#notice")).to_be_visible()
    resume = page.locator('form[action="/queues/search/resume"]')
    expect(resume.get_by_role("button", name="Resume")).to_be_visible()
    shoot(page, site, "queues-search-paused")
    with site.admin_app() as app:
        assert {q["queue"]: q["paused"] for q in app.admin.queues()}["search"] is True
    visit(page, site, "/")
    expect(page.locator('[data-queue="search"]')).to_contain_text(re.compile("paused", re.I))
    shoot(page, site, "overview-search-paused")

    visit(page, site, "/queues")  # resume it, leaving the site as the other tests expect it
    page.locator('form[action="/queues/search/resume"]').get_by_role(
        "button", name="Resume"
    ).click()
    expect(page.locator("#notice")).to_be_visible()
    expect(
        page.locator('form[action="/queues/search/pause"]').get_by_role("button", name="Pause")
    ).to_be_visible()
    with site.admin_app() as app:
        assert {q["queue"]: q["paused"] for q in app.admin.queues()}["search"] is False


def test_hostile_args_show_as_text(page: Any, site: Site) -> None:
    from playwright.sync_api import expect

    visit(page, site, f"/jobs/{site.jobs.hostile}")
    expect(page.locator("main")).to_contain_text(HOSTILE)  # shown as text, not markup
    assert page.evaluate("() => window.__pwned") is None
    assert page.locator("main script, main img[src='/x-hostile']").count() == 0


def test_at_phone_width_nothing_overflows_but_scrolling_tables(browser: Any, site: Site) -> None:
    context = browser.new_context(base_url=site.base_url, viewport=PHONE, is_mobile=True)
    context.set_default_timeout(EXPECT_TIMEOUT)
    try:
        page = context.new_page()
        watch = ConsoleWatch(page)
        problems: dict[str, list[str]] = {}
        for name, path in pages_of(site).items():
            visit(page, site, path)
            if name in ("overview", "jobs", "job-parent"):
                shoot(page, site, f"phone-{name}")
            found = page.evaluate(OVERFLOW_SCRIPT)
            layout_width = page.evaluate("() => document.documentElement.clientWidth")
            if layout_width > PHONE["width"]:  # a phone shrinks a page without a viewport tag
                found.insert(0, f"laid out {layout_width}px wide: no <meta name=viewport>?")
            if found:
                problems[path] = found
    finally:
        context.close()
    assert not watch.errors, "\n".join(watch.errors)
    assert not problems, "\n".join(f"{path}: {'; '.join(p)}" for path, p in problems.items())


def test_a_running_job_shows_its_attempt_in_progress(page: Any, site: Site) -> None:
    from playwright.sync_api import expect

    visit(page, site, f"/jobs/{site.jobs.running}")
    expect(page.locator("#job-state")).to_contain_text("running")
    first = page.locator("ol.attempts > li").first
    expect(first).to_have_attribute("data-attempt", "1")
    expect(first).to_have_class(re.compile(r"\boutcome-running\b"))
    expect(first.locator(".state")).to_have_text("running")
    expect(first).to_contain_text(re.compile(r"started \d{4}-\d\d-\d\d .*running for \S+"))
    with site.admin_app() as app:
        holder = app.get_job(site.jobs.running).locked_by
    assert holder
    expect(first).to_contain_text(f"on {holder}")
    expect(page.locator("main")).not_to_contain_text("No attempt yet")


def test_a_scheduled_job_says_when_it_is_due(page: Any, site: Site) -> None:
    from playwright.sync_api import expect

    due = re.compile(r"^due in 59m[0-5]\ds$|^due in 1h00m$")
    visit(page, site, "/jobs")
    row = page.locator(f'tr[data-job-id="{site.jobs.scheduled}"]')
    expect(row.locator("time.due")).to_have_text(due)
    expect(row.locator("time.due")).to_have_attribute("title", re.compile(r"^due \d{4}-"))
    expect(page.locator(f'tr[data-job-id="{site.jobs.hostile}"] time.due')).to_have_count(0)
    visit(page, site, f"/jobs/{site.jobs.scheduled}")
    expect(page.locator("#job-state")).to_have_text("pending")
    expect(page.locator("#job-due")).to_have_text(due)
    expect(page.locator("dt:text-is('run at') + dd")).to_contain_text(re.compile(r"\(in \S+\)"))


# Every jobs-list row with an error: its height, and the error cell's width.
ERROR_ROWS_SCRIPT = """
() => Array.from(document.querySelectorAll("tr[data-job-id]"))
  .filter((row) => row.querySelector("td.error-text").textContent.trim() !== "")
  .map((row) => ({
    id: row.dataset.jobId,
    state: row.className,
    height: row.getBoundingClientRect().height,
    errorWidth: row.querySelector("td.error-text").getBoundingClientRect().width,
  }))
"""
MAX_ROW_HEIGHT = 80  # px: two or three lines of error text, not a word per line


def test_at_phone_width_failed_rows_stay_short(browser: Any, site: Site) -> None:
    context = browser.new_context(base_url=site.base_url, viewport=PHONE, is_mobile=True)
    context.set_default_timeout(EXPECT_TIMEOUT)
    try:
        page = context.new_page()
        watch = ConsoleWatch(page)
        visit(page, site, "/jobs")
        rows = page.evaluate(ERROR_ROWS_SCRIPT)
        shoot(page, site, "phone-jobs")
    finally:
        context.close()
    assert not watch.errors, "\n".join(watch.errors)
    assert any("row-failed" in row["state"] for row in rows), rows
    tall = [row for row in rows if row["height"] > MAX_ROW_HEIGHT]
    assert not tall, f"rows over {MAX_ROW_HEIGHT}px at {PHONE['width']}px wide: {tall}"


# -- with credentials: viewers see, admins act -----------------------------------------------

ADMIN_LOGIN = {"username": "admin", "password": "pw"}
VIEWER_LOGIN = {"username": "viewer", "password": "pw"}

# Anything that acts: a form that posts, a job checkbox, a button outside a GET filter form.
ACTIONS_SCRIPT = """
() => {
  const main = document.querySelector("main");
  const posting = main.querySelectorAll('form[method="post" i]').length;
  const boxes = main.querySelectorAll('input[name="ids"], input[name="csrf_token"]').length;
  const buttons = Array.from(main.querySelectorAll("button, input[type=submit]"))
    .filter((b) => !b.closest('form[method="get" i]'))
    .map((b) => b.textContent.trim() || b.value);
  return {posting, boxes, buttons};
}
"""


@pytest.fixture
def secured(site: Site, tmp_path: Path) -> Iterator[str]:
    """A second dashboard on the same database, with an admin and a viewer: its address."""
    server = Dashboard(
        site.url,
        tmp_path / "secured-dashboard.log",
        extra_args=["--auth", "admin:pw", "--viewer-auth", "viewer:pw"],
    ).start()
    try:
        yield server.base_url
    finally:
        server.stop()


def test_a_viewer_sees_no_action_and_an_admin_does(browser: Any, site: Site, secured: str) -> None:
    from playwright.sync_api import expect

    paths = {
        "job-failed": f"/jobs/{site.jobs.review}",
        "job-running": f"/jobs/{site.jobs.running}",
        "queues": "/queues",
        "locks": "/locks",
    }
    wanted = {  # what an admin must be offered on each page
        "job-failed": ("Retry", "Resolve review"),
        "job-running": ("Cancel",),
        "queues": ("Pause", "Purge…"),
        "locks": ("Expire…", "Clear locks…"),
    }
    found: dict[str, dict[str, Any]] = {}
    errors: list[str] = []
    for who, login in (("viewer", VIEWER_LOGIN), ("admin", ADMIN_LOGIN)):
        context = browser.new_context(base_url=secured, viewport=DESKTOP, http_credentials=login)
        context.set_default_timeout(EXPECT_TIMEOUT)
        try:
            page = context.new_page()
            watch = ConsoleWatch(page)
            for name, path in paths.items():
                response = page.goto(path)
                assert response is not None and response.status == 200, (who, path)
                expect(page.locator("header.top .who")).to_contain_text(f"{who} · {who}")
                found[f"{who} {name}"] = page.evaluate(ACTIONS_SCRIPT)
                shoot(page, site, f"{who}-{name}")
            errors += watch.errors
        finally:
            context.close()
    assert not errors, "\n".join(errors)
    for name in paths:
        viewer = found[f"viewer {name}"]
        assert viewer == {"posting": 0, "boxes": 0, "buttons": []}, (name, viewer)
        admin = found[f"admin {name}"]
        assert admin["posting"] > 0 and admin["boxes"] > 0, (name, admin)
        for button in wanted[name]:
            assert button in admin["buttons"], (name, button, admin["buttons"])
