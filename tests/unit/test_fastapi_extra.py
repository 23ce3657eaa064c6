"""The FastAPI glue stays behind its extra: ``import leaddb`` never imports FastAPI."""

from __future__ import annotations

import subprocess
import sys


def test_importing_leaddb_imports_no_fastapi_and_the_glue_does() -> None:
    script = (
        "import sys, leaddb, leaddb.models, leaddb.errors\n"
        "print('fastapi' in sys.modules, 'starlette' in sys.modules)\n"
        "import leaddb.fastapi\n"
        "print('fastapi' in sys.modules)\n"
    )
    result = subprocess.run(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.split() == ["False", "False", "True"]
