"""Parent and child rules: what a job reaching its end means for its parent. Pure.

A parent whose handler spawned children waits (`waiting`). Each child that ends (complete,
failed, cancelled) gets its parent's `on_child_complete` callback, run as a job of its own whose
`callback_key` names the child's attempt, so a second delivery inserts nothing. The parent ends
when every job under it (children and callbacks) has ended: `complete`, or `failed` when a child
failed with no callback to judge it, or a callback failed. Its end is then a child's end for its
own parent, so completion cascades up the tree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from roadie.jobs import FAILED, FAILURES, WAITING, Job

CHILD_FAILURE_POLICIES = ("continue", "cancel")


@dataclass(frozen=True)
class Rules:
    """What a parent task declares; stored on the parent when it starts waiting."""

    on_child_complete: str | None = None
    on_complete: str | None = None
    on_child_failure: str = "continue"


def child_callback_key(child: Job) -> str:
    """One callback per child per ending: a retried child that ends again is heard again."""
    return f"child:{child.id}:{child.attempt}"


def complete_callback_key(parent_id: int) -> str:
    return f"complete:{parent_id}"


@dataclass(frozen=True)
class Step:
    """What to do next for the parent: one of the kinds below."""

    kind: str  # "nothing" | "child_callback" | "complete_callback" | "complete" | "fail"
    failure: str | None = None
    error: str | None = None


NOTHING = Step("nothing")


def next_step(
    parent: Job,
    rules: Rules,
    ended: Job,
    open_jobs: Callable[[], int],
    has_complete_callback: Callable[[], bool],
) -> Step:
    """The parent's next step after `ended` (one of its jobs) reached a terminal state.

    `open_jobs()` counts the parent's jobs (children and callbacks) not yet terminal;
    `has_complete_callback()` says whether its on_complete job exists. Both are asked only when
    the step depends on them: counting reads every open job under the parent, and a child whose
    parent hears of each child needs only its callback.
    """
    if parent.state != WAITING:
        return NOTHING  # already ended (failed early, or cancelled): later ends change nothing
    is_child = ended.callback_key is None
    if is_child and hears_each_child(parent, rules):
        return Step("child_callback")
    if ended.state == FAILED:
        return _failure(ended, is_child)
    if open_jobs():
        return NOTHING
    if rules.on_complete and not has_complete_callback():
        return Step("complete_callback")
    return Step("complete")


def hears_each_child(parent: Job, rules: Rules) -> bool:
    """A waiting parent with an `on_child_complete` callback gets one job per child's end."""
    return parent.state == WAITING and bool(rules.on_child_complete)


def _failure(ended: Job, is_child: bool) -> Step:
    """A failed child (no callback to judge it) or a failed callback fails the parent."""
    if is_child:
        return Step("fail", "child_failed", f"child {ended.id} failed: {ended.error}")
    failure = ended.failure if ended.failure not in FAILURES else "child_failed"
    return Step("fail", failure, f"callback {ended.task} failed: {ended.error}")
