"""The `roadie` fixture: the command run in-process through `roadie.cli.main`."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from roadie.cli import main
from tests.cli.running import Run


@pytest.fixture
def roadie(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Run]:
    """Run `roadie ARGV...` in-process; returns its exit code, stdout and stderr."""
    monkeypatch.delenv("ROADIE_APP", raising=False)
    monkeypatch.delenv("ROADIE_DATABASE_URL", raising=False)

    def run(*argv: str) -> Run:
        capsys.readouterr()
        code = main(list(argv))
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run
