"""Cached resources for the Streamlit pages (library functions themselves stay cache-free)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from sqlalchemy.orm import Session, sessionmaker

from healthmon.config import Settings
from healthmon.model.card import ModelCard
from healthmon.model.classifier import Classifier
from healthmon.storage.db import make_engine, session_factory, upgrade


@st.cache_resource(show_spinner=False)
def get_settings() -> Settings:
    return Settings()


def active_model_dir(settings: Settings) -> Path | None:
    """The version the dashboard serves.

    HEALTHMON_ACTIVE_MODEL when set (an operator's explicit choice), else the version the
    database marks active (promoted by retrain, or rolled back to), else the demo model.
    """
    candidates = [settings.active_model] if settings.active_model else []
    if not candidates:
        from healthmon.storage.db import transaction
        from healthmon.storage.repository import active_version

        with transaction(get_database()) as session:
            active = active_version(session)
            if active is not None:
                candidates.append(Path(active.folder))
        candidates.append(settings.demo_model_dir)
    for folder in candidates:
        if (Path(folder) / "card.json").is_file():
            return Path(folder)
    return None


@st.cache_resource(show_spinner="Preparing the database ...")
def get_database() -> sessionmaker[Session]:
    """The session factory, after applying any pending migrations (once per process)."""
    engine = make_engine(settings=get_settings())
    upgrade(engine)
    return session_factory(engine)


@st.cache_resource(show_spinner="Loading the model ...")
def get_classifier(version_dir: str) -> Classifier:
    # Keyed by folder so switching versions loads the new one and keeps the old cached.
    return Classifier.from_pretrained(version_dir, settings=get_settings())


@st.cache_data(show_spinner=False)
def get_card(version_dir: str) -> ModelCard:
    return ModelCard.load(version_dir)


@st.cache_resource(show_spinner=False)
def _registered(version_dir: str) -> bool:
    # Once per folder and process: pages call register_served on every rerun.
    from sqlalchemy.exc import IntegrityError

    from healthmon.storage.db import transaction
    from healthmon.training.continual import ensure_registered

    try:
        with transaction(get_database()) as session:
            ensure_registered(session, Path(version_dir))
    except IntegrityError:
        pass  # another session registered it at the same moment: nothing left to do
    return True


def register_served(version_dir: Path) -> None:
    """Record the served folder as a version (active if the database has none yet)."""
    _registered(str(version_dir))


def _stop_workers(workers: object | None) -> None:
    if workers is not None:
        workers[0].set()  # a cleared cache must not leave the old threads claiming jobs


@st.cache_resource(show_spinner=False, on_release=_stop_workers)
def get_worker() -> object | None:
    """The dashboard's own background worker thread (one per server process).

    With HEALTHMON_WORKER=external the dashboard only queues jobs and a separate
    ``python -m healthmon worker`` runs them.
    """
    settings = get_settings()
    if settings.worker != "thread":
        return None
    from healthmon.jobs import start_thread_workers

    # The workers share the pages' cached models, so a batch job starts warm.
    return start_thread_workers(get_database(), settings, get_classifier)


@st.cache_resource(show_spinner=False)
def get_rules(path: str | None) -> tuple:
    """The advice rules, validated once per process and file (an invalid file raises AdviceError)."""
    from healthmon.advice.rules import load_rules

    return load_rules(path)
