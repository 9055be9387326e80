"""Build hook: ship the dashboard, which lives outside the package, inside the wheel.

``app.py``, ``pages/``, ``assets/`` and ``.streamlit/config.toml`` stay at the top of the checkout.
A wheel (``pip install .``) carries a copy of them in ``healthmon/_app/``, in the same layout, so
:data:`healthmon.ui.server.APP_SCRIPT` finds ``healthmon/_app/app.py`` where there is no checkout,
and Streamlit reads ``healthmon/_app/.streamlit/config.toml`` as the script's own config from any
working directory. An editable install (``pip install -e .``, ``make setup``) copies nothing: it
serves the checkout's files. Everything else about the package is in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
DASHBOARD = ("app.py", "pages", "assets", ".streamlit/config.toml")
PACKAGED_AT = ("healthmon", "_app")


def dashboard_files() -> list[Path]:
    files = []
    for entry in DASHBOARD:
        path = ROOT / entry
        if path.is_dir():
            files += [p for p in sorted(path.rglob("*"))
                      if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: the dashboard is built into the wheel from the checkout; "
                                    "build from a full checkout (or an sdist made from one)")
    return files


class BuildPyWithDashboard(build_py):
    """``build_py``, then the dashboard copied to ``build/lib/healthmon/_app``."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # the checkout's own app.py is served
        target = Path(self.build_lib, *PACKAGED_AT)
        shutil.rmtree(target, ignore_errors=True)  # no stale page from an earlier build
        for source in dashboard_files():
            copy = target / source.relative_to(ROOT)
            self.mkpath(str(copy.parent))
            self.copy_file(str(source), str(copy))


setup(cmdclass={"build_py": BuildPyWithDashboard})
