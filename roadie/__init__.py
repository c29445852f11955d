"""roadie: background jobs that survive crashes, on SQLite or PostgreSQL."""

from roadie.app import App, Task
from roadie.clock import FrozenClock
from roadie.context import JobContext
from roadie.errors import (
    DatabaseUnavailable,
    InvalidInput,
    JobNotFound,
    LeaseLost,
    Permanent,
    RoadieError,
    Transient,
    UnknownTask,
)
from roadie.jobs import Job
from roadie.retry import Backoff

__all__ = [
    "App",
    "Backoff",
    "DatabaseUnavailable",
    "FrozenClock",
    "InvalidInput",
    "Job",
    "JobContext",
    "JobNotFound",
    "LeaseLost",
    "Permanent",
    "RoadieError",
    "Task",
    "Transient",
    "UnknownTask",
]
