"""What a `roadie` command run in-process gave back, and the check of a one-line error.

The `roadie` fixture (tests/cli/conftest.py) returns a `Run`; `assert_error` is the CLI's error
contract (DESIGN.md): the exit code, then exactly one line on stderr, `roadie: error: ...`, with
no usage dump and no traceback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def assert_error(run: Run, code: int, contains: str = "") -> str:
    """One line on stderr, `roadie: error: ...`, no traceback; returns the message.

    `contains` is looked for in stderr ignoring case.
    """
    assert run.code == code, (run.code, run.out, run.err)
    assert run.err.startswith("roadie: error: "), run.err
    assert run.err.endswith("\n") and run.err.count("\n") == 1, run.err
    assert "Traceback" not in run.err + run.out
    assert "Usage:" not in run.err + run.out
    assert contains.lower() in run.err.lower(), run.err
    return run.err.removeprefix("roadie: error: ").rstrip("\n")
