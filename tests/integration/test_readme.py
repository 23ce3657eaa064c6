"""Every ```python block of README.md runs, as written, against the test servers.

Each block is a whole script: it runs in a fresh interpreter with LEADDB_DATABASE_URL and
LEADDB_REDIS_URL pointing at this run's database, as a reader would run it with their own.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from leaddb import LeadDBSettings

if TYPE_CHECKING:
    from conftest import TestServers

README = Path(__file__).resolve().parents[2] / "README.md"
_PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)
THE_TWO_COMMANDS = (
    "python -m pip install nox && nox -s demo",
    "python -m pip install nox && nox -s tests",
)


def python_blocks() -> list[str]:
    return _PYTHON_BLOCK.findall(README.read_text(encoding="utf-8"))


def test_the_readme_has_python_blocks_and_the_two_commands() -> None:
    assert len(python_blocks()) >= 2
    text = README.read_text(encoding="utf-8")
    for command in THE_TWO_COMMANDS:
        assert command in text


@pytest.mark.parametrize("index", range(len(python_blocks())))
async def test_readme_python_block_runs(
    index: int, settings: LeadDBSettings, servers: TestServers, tmp_path: Path
) -> None:
    block = python_blocks()[index]
    script = tmp_path / f"readme_block_{index}.py"
    script.write_text(block, encoding="utf-8")
    assert settings.database_url is not None
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("LEADDB_") or name.startswith("LEADDB_TEST_")
    }
    env["LEADDB_DATABASE_URL"] = settings.database_url.get_secret_value()
    env["LEADDB_REDIS_URL"] = servers.redis_url
    # The checkout's leaddb, not whichever one the interpreter has installed (an editable install
    # of another checkout would migrate this run's database to its own head).
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(README.parent), env.get("PYTHONPATH", "")) if part
    )
    for attempt in ("first run", "second run"):  # the blocks are safe to run again
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            cwd=tmp_path,  # no .env of the repository's
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode == 0, f"block {index}, {attempt}:\n{output.decode()}"
