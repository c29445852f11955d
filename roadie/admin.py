"""What administrators ask of roadie; the CLI, the dashboard and the metrics call only this."""

from __future__ import annotations

from roadie.backends.base import Backend, JobQuery, WorkerInfo
from roadie.config import check_int, check_queue, check_task_name, is_storable_id
from roadie.errors import InvalidInput
from roadie.jobs import STATES, Job

MAX_LIST_LIMIT = 10_000


class Admin:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

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

    def get_job(self, job_id: int) -> Job:
        """The job, or InvalidInput("no job N")."""
        job = self.backend.job_get(job_id) if is_storable_id(job_id) else None
        if job is None:
            raise InvalidInput(f"no job {job_id}")
        return job

    def workers(self) -> list[WorkerInfo]:
        return self.backend.worker_list()
