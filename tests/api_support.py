"""A served API for tests: a tiny real model, a real SQLite database, one account and token per role."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fastapi.testclient import TestClient

from healthmon.api.app import build_state, create_service_app
from healthmon.api.state import ApiState
from healthmon.config import Settings
from healthmon.services import accounts, tokens
from healthmon.training.args import TrainArgs
from healthmon.training.trainer import train

ROLES = {"ada": "admin", "cli": "clinician", "ann": "annotator"}


@dataclass
class Api:
    state: ApiState
    client: TestClient
    version_dir: Path
    tokens: dict[str, str] = field(default_factory=dict)

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}

    @property
    def factory(self):
        return self.state.factory


def trained_version(settings: Settings, notes) -> Path:
    """A real, tiny classification version (a 2-step head fine-tune of the fixture BERT)."""
    return train(notes, TrainArgs(mode="head", max_steps=2), out_dir=settings.data_dir / "served",
                 settings=settings, progress=False).version_dir


def make_api(settings: Settings, version_dir: Path, **overrides) -> Api:
    """The API app (no dashboard) over a fresh database in ``settings.data_dir``, serving ``version_dir``."""
    served = settings.model_copy(update={"active_model": version_dir, **overrides})
    state = build_state(served)
    api = Api(state, TestClient(create_service_app(state), raise_server_exceptions=False), version_dir)
    for name, role in ROLES.items():
        accounts.add_user(state.factory, None, name, role, f"{name}-password-1")
        api.tokens[name], _ = tokens.create_token(state.factory, None, name, "tests")
    return api
