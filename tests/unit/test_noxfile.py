"""`nox -s demo` reuses its venv and installs into it again only when pyproject.toml changed
(issue 25, item 2: a rerun took 41 s, nearly all of it reinstalling)."""

from __future__ import annotations

import functools
import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@functools.cache
def _noxfile() -> ModuleType:
    # Once: loading it registers its sessions with nox, which warns about a second time.
    spec = importlib.util.spec_from_file_location("leaddb_noxfile", ROOT / "noxfile.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Venv:
    def __init__(self, location: Path) -> None:
        self.location = str(location)


class Session:
    """The two things install_once uses of a nox session: its venv and install()."""

    def __init__(self, location: Path) -> None:
        self.virtualenv = Venv(location)
        self.installs: list[tuple[str, ...]] = []

    def install(self, *args: str) -> None:
        self.installs.append(args)

    def log(self, *args: object) -> None:
        pass


def test_the_demo_session_reuses_its_venv() -> None:
    noxfile = _noxfile()
    source = (ROOT / "noxfile.py").read_text()
    assert "@nox.session(reuse_venv=True)\ndef demo(" in source
    assert 'install_once(session, "-e", ".[embedded,cli]")' in source
    assert callable(noxfile.install_once)


def test_install_once_installs_again_only_when_pyproject_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    noxfile = _noxfile()
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "pyproject.toml", project / "pyproject.toml")
    monkeypatch.chdir(project)
    venv = tmp_path / "venv"
    venv.mkdir()
    session = Session(venv)
    noxfile.install_once(session, "-e", ".[embedded,cli]")
    noxfile.install_once(session, "-e", ".[embedded,cli]")
    assert session.installs == [("-e", ".[embedded,cli]")]
    with (project / "pyproject.toml").open("a") as pyproject:
        pyproject.write("\n# a changed dependency\n")
    noxfile.install_once(session, "-e", ".[embedded,cli]")
    noxfile.install_once(session, "-e", ".[embedded]")  # other requirements: installed too
    assert len(session.installs) == 3
