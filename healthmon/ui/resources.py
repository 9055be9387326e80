"""Cached resources for the Streamlit pages (library functions themselves stay cache-free)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from healthmon.advice.rules import load_rules
from healthmon.config import Settings
from healthmon.model.card import ModelCard
from healthmon.model.classifier import Classifier
from healthmon.services import comparison, versions
from healthmon.services.accounts import SignedIn
from healthmon.services.database import Database, connect


@st.cache_resource(show_spinner=False)
def get_settings() -> Settings:
    return Settings()


def active_model_dir(settings: Settings) -> Path | None:
    """The version the dashboard serves (see :func:`healthmon.services.versions.served_version_dir`)."""
    return versions.served_version_dir(get_database(), settings)


@st.cache_resource(show_spinner="Preparing the database ...")
def get_database() -> Database:
    """The session factory, after applying any pending migrations (once per process)."""
    return connect(get_settings())


@st.cache_resource(show_spinner="Loading the model ...")
def get_classifier(version_dir: str) -> Classifier:
    # Keyed by folder so switching versions loads the new one and keeps the old cached.
    return Classifier.from_pretrained(version_dir, settings=get_settings())


@st.cache_data(show_spinner=False)
def get_card(version_dir: str) -> ModelCard:
    return ModelCard.load(version_dir)


@st.cache_data(show_spinner=False, max_entries=8, ttl="1h")
def get_comparison(first_dir: str, second_dir: str, _user: SignedIn) -> comparison.Comparison:
    """Two versions scored on the first one's test notes, kept per pair of folders (a version folder
    never changes once written). The user is checked by the service on the first call, not keyed:
    every role may view models. Both models are loaded for the call and let go after it."""
    return comparison.compare_versions(_user, first_dir, second_dir, settings=get_settings(), factory=get_database())


@st.cache_resource(show_spinner=False)
def _registered(version_dir: str) -> bool:
    # Once per folder and process: pages call register_served on every rerun.
    versions.register_served(get_database(), Path(version_dir))
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
    # Loaded here, not at the top: the worker brings the trainer (transformers' Trainer, peft), which
    # a dashboard with an external worker never needs.
    from healthmon.services.worker import start_thread_workers

    # The workers share the pages' cached models, so a batch job starts warm.
    return start_thread_workers(get_database(), settings, get_classifier)


@st.cache_resource(show_spinner=False)
def get_rules(path: str | None) -> tuple:
    """The advice rules, validated once per process and file (an invalid file raises AdviceError)."""
    return load_rules(path)
