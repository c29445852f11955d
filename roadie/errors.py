"""The one root of roadie's errors, and the few kinds a caller can act on differently."""


class RoadieError(Exception):
    """Every error roadie raises on purpose derives from this."""


class InvalidInput(RoadieError, ValueError):
    """Bad input at the API edge: refused before anything is written."""


class UnknownTask(InvalidInput):
    """A task name that no `@app.task` registered."""


class JobNotFound(InvalidInput):
    """No job has that id (the CLI exits 2; the API answers 404)."""

    def __init__(self, job_id: object) -> None:
        super().__init__(f"no job {job_id}")
        self.job_id = job_id


class LeaseLost(RoadieError):
    """A fenced write matched no row: this worker no longer owns the job; its write changed nothing."""


class DatabaseUnavailable(RoadieError, ConnectionError):
    """The database could not be reached or refused to serve; the operation may be retried.

    A `ConnectionError`, so a task that meets it is retried (a transient error).
    """


class Transient(RoadieError):
    """Raise from a task to retry it later (after `retry_in`, or the task's backoff)."""

    def __init__(self, message: str = "", retry_in: object = None) -> None:
        super().__init__(message)
        self.retry_in = retry_in


class Permanent(RoadieError):
    """Raise from a task to fail it now, with no retry, flagged for review.

    `failure` names the kind of failure (default "permanent"); raised from a parent's
    callback, it is the failure the parent is given (default "child_failed").
    """

    def __init__(self, message: str = "", failure: str | None = None) -> None:
        super().__init__(message)
        self.failure = failure


class SchemaMissing(RoadieError):
    """The database has no roadie tables yet: `roadie migrate` (or `app.migrate()`) creates them."""

    def __init__(self) -> None:
        super().__init__("the database has no roadie tables: run `roadie migrate` first")
