"""What administrators ask of roadie; the CLI, the dashboard and the metrics call only this."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from roadie.backends.base import Backend, JobQuery, WorkerInfo
from roadie.config import check_int, check_queue, check_task_name, is_storable_id
from roadie.errors import InvalidInput
from roadie.jobs import STATES, Job

MAX_LIST_LIMIT = 10_000
DEFAULT_MAX_ATTEMPTS = 20


class Admin:
    def __init__(self, backend: Backend, tasks: Mapping[str, Any] | None = None) -> None:
        self.backend = backend
        self.tasks = tasks or {}

    def list_jobs(
        self,
        state: str | None = None,
        queue: str | None = None,
        task: str | None = None,
        limit: int = 100,
    ) -> list[Job]:
        """Jobs matching every filter given, newest first."""
        if state is not None and state not in STATES:
            raise InvalidInput(f"unknown state {state!r}: use one of {', '.join(STATES)}")
        query = JobQuery(
            state=state,
            queue=check_queue(queue) if queue is not None else None,
            task=check_task_name(task) if task is not None else None,
            limit=check_int(limit, "limit", (1, MAX_LIST_LIMIT)),
        )
        return self.backend.job_list(query)

    def find_job(self, job_id: int) -> Job | None:
        """The job with its children, or None if no job has that id."""
        job = self.backend.job_get(job_id) if is_storable_id(job_id) else None
        return replace(job, children=self.backend.job_list_children(job.id)) if job else None

    def get_job(self, job_id: int) -> Job:
        """The job with its children, or InvalidInput("no job N")."""
        job = self.find_job(job_id)
        if job is None:
            raise InvalidInput(f"no job {job_id}")
        return job

    def cancel(self, job_ids: Sequence[int]) -> list[Job]:
        """Cancel jobs that have not ended, with what waits under them; the ones cancelled.

        A running job is cancelled cooperatively: its worker's writes are refused and its
        `ctx.cancelled` turns true at the next heartbeat.
        """
        known = self._known(job_ids)
        return [done for job in known if (done := self.backend.job_cancel(job.id))]

    def retry(self, job_ids: Sequence[int]) -> list[Job]:
        """Retry failed or cancelled jobs: a new attempt with a fresh allowance of the task's
        max_attempts; a parent that failed through the job waits for it again."""
        retried = []
        for job in self._known(job_ids):
            task = self.tasks.get(job.task)
            allowance = task.max_attempts if task is not None else DEFAULT_MAX_ATTEMPTS
            if (done := self.backend.job_requeue(job.id, allowance)) is not None:
                retried.append(done)
        return retried

    def _known(self, job_ids: Sequence[int]) -> list[Job]:
        """The jobs, after refusing (InvalidInput, nothing done) any id that names no job."""
        jobs = []
        for job_id in job_ids:
            job = self.backend.job_get(job_id) if is_storable_id(job_id) else None
            if job is None:
                raise InvalidInput(f"no job {job_id}")
            jobs.append(job)
        return jobs

    def workers(self) -> list[WorkerInfo]:
        return self.backend.worker_list()
