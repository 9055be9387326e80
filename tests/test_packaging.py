"""``pip install .``: a ``healthmon`` command that serves the dashboard from any folder.

The dashboard (app.py, pages/, assets/, .streamlit/config.toml) lives outside the package; setup.py
copies it into ``healthmon/_app`` in the wheel and :data:`healthmon.ui.server.APP_SCRIPT` finds it
there when there is no checkout. The slow tests build and install the package offline into a
throwaway virtual environment (this environment's packages as its dependencies) and run it from an
empty folder.
"""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import ROOT
from test_https import STREAMLIT_CONF, dashboard_run, element_texts, server_env, start_server

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
#: What the wheel is built from: the package and the dashboard around it.
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "requirements.txt", "README.md", "healthmon", "app.py",
           "pages", "assets", ".streamlit")
UNITS = ROOT / "deploy" / "systemd"
INSTALLED_AT = "/opt/healthmon/venv/bin/healthmon"  # where the systemd units expect the command


def test_a_checkout_serves_its_own_app_script():
    from healthmon.ui.server import APP_SCRIPT

    assert APP_SCRIPT == ROOT / "app.py"


def test_the_package_declares_its_command_and_takes_its_pins_from_requirements():
    from healthmon import cli

    assert PYPROJECT["project"]["scripts"] == {"healthmon": "healthmon.cli:main"}
    assert callable(cli.main)
    assert PYPROJECT["project"]["dynamic"] == ["dependencies"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["dependencies"] == {"file": ["requirements.txt"]}
    assert PYPROJECT["build-system"]["build-backend"] == "setuptools.build_meta"


def test_every_file_healthmon_reads_beside_its_modules_is_package_data():
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["*"]
    data = [p for p in (ROOT / "healthmon").rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    assert data, "healthmon has files besides its modules (rules.toml, the report template, ...)"
    missing = [str(p.relative_to(ROOT)) for p in data if not any(fnmatch.fnmatch(p.name, pat) for pat in patterns)]
    assert not missing, f"not in the wheel: {missing}; add their pattern to [tool.setuptools.package-data]"


@dataclass
class Installed:
    venv: Path
    python: Path
    script: Path
    site: Path


def _run(command: list, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in command], check=False, capture_output=True, text=True, timeout=600,
                          **kwargs)
    assert done.returncode == 0, f"{' '.join(map(str, command))} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    folder = tmp_path_factory.mktemp("pip-install")
    source = folder / "src"  # a copy, so the build leaves nothing (build/, *.egg-info) in the checkout
    source.mkdir()
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=skip)
        else:
            shutil.copy2(path, source / name)
    venv = folder / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv])
    python = venv / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    # From a virtual environment's python, --system-site-packages reaches the base interpreter's
    # packages, not this environment's: a .pth line puts this environment's (the pinned
    # dependencies, pip, setuptools) after the new one's own, so nothing is downloaded.
    parents = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "_healthmon_test_dependencies.pth").write_text("\n".join(parents) + "\n")
    _run([python, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-build-isolation", "."],
         cwd=source)
    return Installed(venv, python, venv / "bin" / "healthmon", site)


@pytest.mark.slow
def test_installed_healthmon_serves_the_packaged_dashboard_from_any_folder(installed: Installed, tmp_path: Path):
    elsewhere = tmp_path / "elsewhere"  # no app.py, no .streamlit/ here
    elsewhere.mkdir()
    env = server_env(tmp_path / "data")
    usage = _run([installed.script, "--help"], cwd=elsewhere, env=env).stdout
    assert all(command in usage for command in ("serve", "train", "predict", "worker", "users", "db"))

    probe = "import healthmon, healthmon.ui.server as s; print(healthmon.__file__); print(s.APP_SCRIPT)"
    where = _run([installed.python, "-c", probe], cwd=elsewhere, env=env).stdout.split()
    package, app_script = Path(where[0]).parent, Path(where[1])
    assert package == installed.site / "healthmon", "the installed copy is imported, not the checkout"
    assert app_script == package / "_app" / "app.py"
    for packaged in ("app.py", "pages/1_Notes.py", "assets/logo.svg", ".streamlit/config.toml"):
        assert (package / "_app" / packaged).is_file(), packaged
    assert (package / "_app" / ".streamlit" / "config.toml").read_text() == STREAMLIT_CONF.read_text()
    for data in ("advice/rules.toml", "report/template.html.j2", "storage/migrations/script.py.mako",
                 "storage/migrations/versions/0001_initial_schema.py"):
        assert (package / data).is_file(), data

    server = start_server([installed.script], data_dir=tmp_path / "data", cwd=elsewhere, log=tmp_path / "serve.log")
    try:
        health = httpx.get(f"{server.url}/healthz", timeout=30)
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        page = httpx.get(f"{server.url}/", follow_redirects=True, timeout=30)  # the dashboard, or its sign-in first
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        index = httpx.get(f"{server.url}/index.html", timeout=30)
        assert index.status_code == 200 and '<div id="root">' in index.text, index.text[:300]
        new_session, messages = dashboard_run(f"ws://127.0.0.1:{server.port}/_stcore/stream")
    finally:
        server.stop()
    assert Path(new_session.main_script_path) == app_script
    theme = tomllib.loads(STREAMLIT_CONF.read_text())["theme"]
    # .streamlit/config.toml applies though the server runs in a folder without one.
    assert new_session.custom_theme.primary_color == theme["primaryColor"]
    assert any("healthmon" in text for text in element_texts(messages)), "the app script ran"
    errors = [str(m.delta.new_element.exception) for m in messages
              if m.WhichOneof("type") == "delta" and m.delta.new_element.WhichOneof("type") == "exception"]
    assert not errors, errors
    assert "Application shutdown complete" in server.tail(), server.tail()  # SIGTERM: a clean stop


@pytest.mark.slow
def test_systemd_units_pass_systemd_analyze_verify(installed: Installed, tmp_path: Path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("no systemd-analyze on this machine to check the units with")
    units = []
    for unit in ("healthmon.service", "healthmon-worker.service"):
        text = (UNITS / unit).read_text()
        assert INSTALLED_AT in text, unit
        units.append(tmp_path / unit)
        units[-1].write_text(text.replace(INSTALLED_AT, str(installed.script)))  # the command must exist
    done = subprocess.run([analyze, "verify", "--man=no", *map(str, units)], check=False, capture_output=True,
                          text=True, timeout=120)
    complaints = [line for line in (done.stdout + done.stderr).splitlines()
                  if any(unit.name in line for unit in units)]
    assert done.returncode == 0 and not complaints, done.stdout + done.stderr
