"""Project conventions that are easy to break silently."""

from __future__ import annotations

import re

from healthmon.config import Settings

from conftest import ROOT


def test_every_setting_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [name for name in Settings.model_fields if f"HEALTHMON_{name.upper()}" not in readme]
    assert not missing, f"document these settings in README.md: {missing}"


def test_only_app_pages_and_ui_import_streamlit():
    offenders = []
    for path in (ROOT / "healthmon").rglob("*.py"):
        if "ui" in path.relative_to(ROOT / "healthmon").parts:
            continue
        if re.search(r"^\s*(import|from)\s+streamlit", path.read_text(encoding="utf-8"), re.M):
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, offenders


def test_settings_read_the_environment_and_keywords(monkeypatch, tmp_path):
    monkeypatch.setenv("HEALTHMON_MAX_LENGTH", "128")
    monkeypatch.setenv("HEALTHMON_DATA_DIR", str(tmp_path))
    settings = Settings()
    assert settings.max_length == 128
    assert settings.resolved_models_dir == tmp_path / "models"
    assert settings.resolved_database_url.startswith("sqlite:///")
    assert Settings(max_length=64).max_length == 64
    assert Settings().resolved_base_model.endswith("model")
