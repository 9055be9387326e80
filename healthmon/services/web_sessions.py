"""Dashboard sessions that survive a reload: the signed session cookie and single sign-on.

A local sign-in (the ``/signin`` route) creates an ``auth_sessions`` row
(:func:`healthmon.services.accounts.sign_in`) and puts its token in a signed, HttpOnly cookie;
every page run reads the cookie back and checks the row, so sign-out, a password change,
deactivation and the idle and absolute limits end the session in every tab.

A single sign-on (Streamlit's ``st.login`` against the hospital's OpenID Connect provider) is
tied to a row too: its token is derived from that sign-in's ID-token claims (issuer, subject,
issued-at, nonce), so a reload finds the same row, while a replayed provider cookie after
sign-out finds a revoked one and is refused. The role comes from a configured claim through an
explicit map; nobody gets a default role.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from healthmon.config import Settings
from healthmon.errors import StorageError
from healthmon.services.accounts import (
    AuthError,
    SignedIn,
    _guard_last_admin,
    check_session,
    open_session,
    token_hash,
)
from healthmon.storage.db import transaction
from healthmon.storage.models import AuthSession, User, utcnow
from healthmon.storage.repository import audit

COOKIE_NAME = "healthmon_session"
CSRF_COOKIE_NAME = "healthmon_csrf"
SECRET_FILE = "session-secret"
MIN_SECRET = 32
_SECRET_FIX = "generate one with `python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
#: Names the audit log uses for itself and the command line: never a provider user's name.
RESERVED_NAMES = frozenset({"cli", "system", "sso", "api", "worker"})
#: Most privileged first: a person in several mapped groups gets the strongest role they map to.
ROLE_ORDER = ("admin", "clinician", "annotator")


def session_secret(settings: Settings) -> str:
    """The cookie-signing key: the setting, else a random key kept in the data folder (0600)."""
    if settings.session_secret:
        if len(settings.session_secret) < MIN_SECRET:
            raise AuthError(f"a HEALTHMON_SESSION_SECRET of {MIN_SECRET} characters or more",
                            f"{len(settings.session_secret)} characters", _SECRET_FIX)
        return settings.session_secret
    return _file_secret(Path(settings.data_dir).resolve())


@lru_cache(maxsize=8)
def _file_secret(data_dir: Path) -> str:
    """The key in ``data_dir``, made on first use. Read once per process: every page run and poll
    checks a cookie, and the key never changes while the server runs (a new one needs a restart)."""
    path = data_dir / SECRET_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole under a temporary name, then linked into place (link fails if the name
        # exists): a process starting at the same moment never reads a half-written key.
        temporary = path.with_name(f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process won; use its key
        finally:
            temporary.unlink()
    key = path.read_text().strip()
    if len(key) < MIN_SECRET:  # an empty or truncated file would let anyone forge a cookie
        raise AuthError(f"a session key of {MIN_SECRET} characters or more in {path}", f"{len(key)} characters",
                        f"delete the file (a new key is made at the next start; everyone signs in again), or set "
                        f"HEALTHMON_SESSION_SECRET: {_SECRET_FIX}")
    return key


def _signature(value: str, secret: str) -> str:
    return hmac.new(secret.encode(), value.encode(), hashlib.sha256).hexdigest()[:32]


def sign_cookie(token: str, secret: str) -> str:
    """``token.signature``: the session token (nothing else: no name, no role) with its HMAC."""
    return f"{token}.{_signature(token, secret)}"


def read_cookie(value: str | None, secret: str) -> str | None:
    """The session token in a cookie value, or None when it is missing or its signature is wrong."""
    if not value or "." not in value:
        return None
    token, _, signature = value.rpartition(".")
    return token if hmac.compare_digest(signature, _signature(token, secret)) else None


def cookie_session(factory: sessionmaker[Session], settings: Settings, cookie: str | None, *,
                   touch: bool = True) -> SignedIn | None:
    """The user whose session cookie this is (refreshing its idle timer unless ``touch=False``);
    None when it is not valid."""
    token = read_cookie(cookie, session_secret(settings))
    if token is None:
        return None
    try:
        return check_session(factory, token, settings, touch=touch)
    except AuthError:
        return None


# ----------------------------------------------------------------------------- single sign-on
def sso_configured(settings: Settings) -> bool:
    return bool(settings.oidc_metadata_url and settings.oidc_client_id and settings.oidc_client_secret)


def sso_token(claims: Mapping[str, object]) -> str:
    """The session token of one provider sign-in: the same on every reload, new at each sign-in."""
    parts = [str(claims.get(k, "")) for k in ("iss", "sub", "iat", "nonce")]
    if not parts[1] or not parts[2]:
        raise AuthError("an ID token with `sub` and `iat` claims", "a token without them",
                        "check the provider's client settings (an OpenID Connect ID token always has both)")
    return "sso-" + hashlib.sha256("\n".join(parts).encode()).hexdigest()


def mapped_role(settings: Settings, claims: Mapping[str, object]) -> str | None:
    """The most privileged role that the configured claim's values map to, or None."""
    value = claims.get(settings.oidc_role_claim)
    values = [value] if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else []
    roles = {settings.oidc_role_map.get(str(v)) for v in values} - {None}
    return next((role for role in ROLE_ORDER if role in roles), None)


def _display_name(claims: Mapping[str, object]) -> str:
    # An email counts only when the provider says it was verified: an unverified one is whatever
    # the person typed into their profile.
    keys = ("preferred_username", "email", "name", "sub") if claims.get("email_verified") else (
        "preferred_username", "name", "sub")
    for key in keys:
        if claims.get(key):
            return str(claims[key])[:100]
    return "sso user"


def _identity_suffix(external_id: str) -> str:
    return hashlib.sha256(external_id.encode()).hexdigest()[:8]


def sso_session(factory: sessionmaker[Session], settings: Settings, claims: Mapping[str, object], *,
                now: datetime | None = None, touch: bool = True) -> tuple[SignedIn, bool]:
    """The healthmon session for a provider sign-in, created at its first page run, and whether
    it was created just now (the page that asked for the sign-in can then be opened).

    The first sign-in of a person creates their account (named after ``preferred_username`` or
    ``email``, tied to issuer and subject); each new sign-in sets the role from the claim again.
    A deactivated account stays refused whatever the provider says.

    Raises:
        AuthError: the claim maps to no role, the account is deactivated, or this sign-in's
            session was signed out or has expired (the provider's cookie outlives it).
    """
    token = sso_token(claims)
    now = now or utcnow()
    try:  # every page run and poll after the first: the row's own rules (sign-out, idle, absolute, active)
        return check_session(factory, token, settings, now=now, touch=touch), False
    except AuthError:
        with transaction(factory) as session:
            if session.scalar(select(AuthSession.id).where(AuthSession.token_hash == token_hash(token))) is not None:
                raise  # this sign-in's session existed and has ended: the provider's cookie outlives it
    issued = claims.get("iat")
    if isinstance(issued, (int, float)) and now.timestamp() - issued > settings.session_max_hours * 3600:
        # Streamlit's identity cookie lives 30 days; a sign-in older than a session's whole life
        # never opens a new one (e.g. a replayed cookie once its session row was purged).
        raise AuthError(f"a provider sign-in from the last {settings.session_max_hours:g} hours",
                        "an older one", "sign out and sign in again")
    try:
        with transaction(factory) as session:
            outcome = _open_sso_session(session, settings, claims, token, now)
    except IntegrityError:  # the same sign-in's first run in another tab or server got there first
        return check_session(factory, token, settings, now=now), False
    if isinstance(outcome, AuthError):  # raised only now: the refusal's audit entry is committed
        raise outcome
    return outcome, True


def _open_sso_session(session: Session, settings: Settings, claims: Mapping[str, object], token: str,
                      now: datetime) -> SignedIn | AuthError:
    external_id = f"{claims.get('iss', '')} {claims['sub']}"
    role = mapped_role(settings, claims)
    if role is None:
        audit(session, _display_name(claims), "auth.refused", "user", "-",
              after={"reason": "no mapped role", "claim": settings.oidc_role_claim})
        return AuthError(f"membership of a group that healthmon maps to a role (claim `{settings.oidc_role_claim}`)",
                         "none of your groups is mapped", "ask your healthmon administrator to give your group a role")
    user = session.scalar(select(User).where(User.external_id == external_id))
    if user is None:
        name = _display_name(claims)
        if (name.lower() in RESERVED_NAMES or name.startswith("unknown:")
                or session.scalar(select(User.id).where(User.name == name)) is not None):
            # Never another account's name, nor one the audit log uses for itself.
            name = f"{name} ({_identity_suffix(external_id)})"
        user = User(name=name, role=role, external_id=external_id)
        session.add(user)
        session.flush()
        audit(session, "sso", "user.create", "user", user.id, after={"name": name, "role": role})
    elif not user.active:
        audit(session, user.name, "auth.refused", "user", user.id, after={"reason": "deactivated"})
        return AuthError("an active account", "a deactivated account", "ask a healthmon administrator to reactivate it")
    if user.role != role:
        try:
            _guard_last_admin(session, user, role=role)
        except StorageError:
            pass  # the provider's groups changed; healthmon keeps one admin
        else:
            audit(session, "sso", "user.role", "user", user.id, before={"role": user.role}, after={"role": role})
            user.role = role
    audit(session, user.name, "auth.sign_in", "user", user.id, after={"method": "sso"})
    return open_session(session, user, token, settings, now)
