"""Parent and child jobs on both backends: spawn, exactly-once callbacks, cascading ends."""

from __future__ import annotations

import pytest

from roadie import App, FrozenClock, InvalidInput, Permanent


@pytest.fixture
def tree_app(make_app) -> App:
    return make_app(clock=FrozenClock())


def drain(app: App) -> None:
    app.run_worker(burst=True, concurrency=4)


def test_fan_out_of_100_children_with_exactly_one_callback_each(tree_app: App) -> None:
    app = tree_app
    heard: list[int] = []
    parent_states: list[str] = []

    @app.task(queue="content")
    def publish(ctx, video: int) -> dict:
        for n in range(100):
            ctx.spawn(render, video=video, n=n)
        return {"video": video}

    @publish.on_child_complete
    def rendition_done(ctx, child) -> None:
        assert ctx.job.task == "publish" and child.parent_id == ctx.job.id
        heard.append(child.id)
        parent_states.append(app.backend.job_get(ctx.job.id).state)

    @app.task(queue="content")
    def render(ctx, video: int, n: int) -> int:
        return n

    job = publish.enqueue(video=7)
    drain(app)
    parent = app.get_job(job.id)
    assert parent.state == "complete" and parent.result == {"video": 7}
    assert sorted(heard) == sorted(c.id for c in parent.children) and len(heard) == 100
    assert set(parent_states) == {"waiting"}  # never complete before the last callback
    assert parent.child_counts == {"complete": 100}
    callbacks = [j for j in app.admin.list_jobs(limit=1000) if j.task == "rendition_done"]
    assert len(callbacks) == 100 and all(j.parent_id == job.id for j in callbacks)
    assert parent.finished_at >= max(j.finished_at for j in callbacks + parent.children)


def test_a_three_level_tree_completes_bottom_up(tree_app: App) -> None:
    app = tree_app
    ended: list[str] = []

    @app.task(queue="content")
    def season(ctx) -> None:
        for e in range(2):
            ctx.spawn(episode, e=e)

    @app.task(queue="content")
    def episode(ctx, e: int) -> None:
        for r in range(2):
            ctx.spawn(rendition, e=e, r=r)

    @app.task(queue="content")
    def rendition(ctx, e: int, r: int) -> None:
        ended.append(f"rendition {e}.{r}")

    @episode.on_complete
    def episode_done(ctx) -> None:
        ended.append(f"episode {ctx.job.args['e']}")

    @season.on_complete
    def season_done(ctx) -> None:
        ended.append("season")

    job = season.enqueue()
    drain(app)
    top = app.get_job(job.id)
    assert top.state == "complete"
    episodes = top.children
    assert [e.state for e in episodes] == ["complete", "complete"]
    for e in range(2):
        assert ended.index(f"episode {e}") > max(
            ended.index(f"rendition {e}.{r}") for r in range(2)
        )
    assert ended[-1] == "season" and len(ended) == 7
    leaves = [c for e in episodes for c in app.get_job(e.id).children]
    assert max(leaf.finished_at for leaf in leaves) <= min(e.finished_at for e in episodes)
    assert max(e.finished_at for e in episodes) <= top.finished_at


def test_a_parent_with_no_children_completes_at_once(tree_app: App) -> None:
    @tree_app.task(queue="content")
    def publish(ctx) -> str:
        return "nothing to render"

    job = publish.enqueue()
    drain(tree_app)
    assert tree_app.get_job(job.id).state == "complete"


def test_a_parent_without_callback_waits_and_fails_with_a_failed_child(tree_app: App) -> None:
    app = tree_app

    @app.task(queue="content")
    def publish(ctx) -> None:
        ctx.spawn(render, ok=True)
        ctx.spawn(render, ok=False)

    @app.task(queue="content")
    def render(ctx, ok: bool) -> None:
        if not ok:
            raise ValueError("corrupt frame")

    job = publish.enqueue()
    drain(app)
    parent = app.get_job(job.id)
    assert (parent.state, parent.failure) == ("failed", "child_failed")
    assert "corrupt frame" in parent.error and parent.needs_review
    assert parent.child_counts == {"complete": 1, "failed": 1}


@pytest.mark.parametrize(
    ("policy", "sibling_state"), [("continue", "complete"), ("cancel", "cancelled")]
)
def test_failure_policy_for_the_other_children(
    tree_app: App, policy: str, sibling_state: str
) -> None:
    app = tree_app

    @app.task(queue="content", on_child_failure=policy)
    def publish(ctx) -> None:
        ctx.spawn(render.options(priority=10), ok=False)  # runs first
        for _ in range(3):
            ctx.spawn(render, ok=True)

    @app.task(queue="content")
    def render(ctx, ok: bool) -> None:
        if not ok:
            raise Permanent("no video stream")

    job = publish.enqueue()
    app.run_worker(burst=True, concurrency=1)
    parent = app.get_job(job.id)
    assert (parent.state, parent.failure) == ("failed", "child_failed")
    assert [c.state for c in parent.children] == ["failed"] + [sibling_state] * 3


def test_permanent_in_a_callback_fails_the_parent_as_it_says(tree_app: App) -> None:
    app = tree_app

    @app.task(queue="content")
    def publish(ctx) -> None:
        ctx.spawn(render, n=1)

    @publish.on_child_complete
    def check(ctx, child) -> None:
        raise Permanent(f"rendition {child.id} too small", failure="rendition_rejected")

    @app.task(queue="content")
    def render(ctx, n: int) -> None: ...

    job = publish.enqueue()
    drain(app)
    parent = app.get_job(job.id)
    assert (parent.state, parent.failure) == ("failed", "rendition_rejected")
    assert "too small" in parent.error


def test_a_callback_that_accepts_a_failed_child_lets_the_parent_complete(tree_app: App) -> None:
    app = tree_app
    seen = []

    @app.task(queue="content")
    def publish(ctx) -> None:
        ctx.spawn(render)

    @publish.on_child_complete
    def check(ctx, child) -> None:
        seen.append((child.state, child.error))

    @app.task(queue="content")
    def render(ctx) -> None:
        raise ValueError("bad input")

    job = publish.enqueue()
    drain(app)
    assert app.get_job(job.id).state == "complete"
    assert seen == [("failed", "ValueError: bad input")]


def test_children_are_written_with_the_completion_only(tree_app: App) -> None:
    app = tree_app
    runs = []

    @app.task(queue="content")
    def publish(ctx) -> None:
        runs.append(ctx.job.attempt)
        for n in range(3):
            ctx.spawn(render, n=n)
        if ctx.job.attempt == 1:
            raise TimeoutError("storage timed out after spawning")

    @app.task(queue="content")
    def render(ctx, n: int) -> None: ...

    job = publish.enqueue()
    drain(app)
    assert app.get_job(job.id).children == []  # the failed attempt left no children
    app.clock.advance(5)
    drain(app)
    parent = app.get_job(job.id)
    assert runs == [1, 2] and parent.state == "complete"
    assert sorted(c.args["n"] for c in parent.children) == [0, 1, 2]


def test_spawn_by_name_with_options(tree_app: App) -> None:
    app = tree_app

    @app.task(queue="content")
    def publish(ctx) -> None:
        ctx.spawn("index")
        ctx.spawn(index.options(queue="indexing-bulk", priority=3))

    @app.task(queue="indexing")
    def index(ctx) -> None: ...

    job = publish.enqueue()
    publish_only = app.run_worker(queues=["content"], burst=True)
    assert publish_only == 0
    children = app.get_job(job.id).children
    assert [(c.queue, c.priority, c.state) for c in children] == [
        ("indexing", 0, "pending"),
        ("indexing-bulk", 3, "pending"),
    ]
    app.run_worker(queues=["indexing", "indexing-bulk"], burst=True)
    assert app.get_job(job.id).state == "complete"


def test_spawning_an_unknown_task_fails_the_parent_handler(tree_app: App) -> None:
    @tree_app.task(queue="content")
    def publish(ctx) -> None:
        ctx.spawn("no_such_task")

    job = publish.enqueue()
    drain(tree_app)
    parent = tree_app.get_job(job.id)
    assert parent.state == "failed" and "unknown task 'no_such_task'" in parent.error
    assert parent.children == []


def test_callbacks_cannot_be_enqueued_or_spawn(tree_app: App) -> None:
    app = tree_app

    @app.task(queue="content")
    def publish(ctx) -> None:
        ctx.spawn(render)

    @publish.on_child_complete
    def done(ctx, child) -> None:
        ctx.spawn(render)

    @app.task(queue="content")
    def render(ctx) -> None: ...

    with pytest.raises(InvalidInput, match="callback"):
        app.enqueue("done")
    job = publish.enqueue()
    drain(app)
    parent = app.get_job(job.id)
    assert (parent.state, parent.failure) == ("failed", "child_failed")
    assert "callback cannot spawn" in parent.error


def test_a_second_delivery_of_a_child_end_adds_no_callback(tree_app: App) -> None:
    app = tree_app

    @app.task(queue="content")
    def publish(ctx) -> None:
        ctx.spawn(render)

    @publish.on_child_complete
    def done(ctx, child) -> None: ...

    @app.task(queue="rendering")
    def render(ctx) -> None: ...

    job = publish.enqueue()
    app.run_worker(queues=["content"], burst=True)
    app.run_worker(queues=["rendering"], burst=True)  # the child ends; its callback waits
    child = app.get_job(job.id).children[0]
    backend = app.backend
    for _ in range(2):  # the same child's end told to its parent again
        with backend._atomic() as run:
            backend._tell_parent(run, backend.job_get(child.id))
    callbacks = [j for j in app.admin.list_jobs() if j.task == "done"]
    assert len(callbacks) == 1 and callbacks[0].state == "pending"
    assert app.get_job(job.id).state == "waiting"
    app.run_worker(queues=["content"], burst=True)
    assert app.get_job(job.id).state == "complete"


def test_cancelling_a_parent_cancels_its_pending_descendants(tree_app: App) -> None:
    app = tree_app

    @app.task(queue="content")
    def publish(ctx) -> None:
        ctx.spawn(episode)
        ctx.spawn(render)

    @app.task(queue="content")
    def episode(ctx) -> None:
        ctx.spawn(render)

    @app.task(queue="rendering")
    def render(ctx) -> None: ...

    job = publish.enqueue()
    app.run_worker(queues=["content"], burst=True)  # the renders stay pending
    [cancelled] = app.admin.cancel([job.id])
    assert cancelled.state == "cancelled"
    parent = app.get_job(job.id)
    episode_job = next(c for c in parent.children if c.task == "episode")
    assert {c.state for c in parent.children} == {"cancelled"}
    assert [c.state for c in app.get_job(episode_job.id).children] == ["cancelled"]
    assert app.admin.cancel([job.id]) == []  # already ended: nothing to do
    with pytest.raises(InvalidInput, match="no job"):
        app.admin.cancel([10**9])


def test_retrying_a_failed_child_reopens_its_parents_wait(tree_app: App) -> None:
    app = tree_app
    fixed = []

    @app.task(queue="content")
    def season(ctx) -> None:
        ctx.spawn(publish)

    @app.task(queue="content")
    def publish(ctx) -> None:
        ctx.spawn(render)

    @app.task(queue="content", max_attempts=1)
    def render(ctx) -> str:
        if not fixed:
            raise ValueError("codec missing")
        return "rendered"

    top = season.enqueue()
    drain(app)
    middle = app.get_job(top.id).children[0]
    failed_render = app.get_job(middle.id).children[0]
    assert [app.get_job(j).state for j in (top.id, middle.id, failed_render.id)] == ["failed"] * 3
    fixed.append(True)
    [retried] = app.admin.retry([failed_render.id])
    assert (retried.state, retried.attempt, retried.max_attempts) == ("pending", 1, 2)
    assert app.get_job(middle.id).state == "waiting" and app.get_job(top.id).state == "waiting"
    drain(app)
    assert [app.get_job(j).state for j in (top.id, middle.id, failed_render.id)] == ["complete"] * 3
    render_job = app.get_job(failed_render.id)
    assert render_job.attempt == 2 and render_job.result == "rendered"
