"""Sign-in, sessions and roles: who may do what, checked by every page and every action.

Accounts live in the database (``users``) with argon2id password hashes. Signing in
creates an ``auth_sessions`` row holding only a SHA-256 of a random token; the token
itself stays in the user's browser session. A session ends after ``session_idle_minutes``
without activity or ``session_max_hours`` after sign-in, whichever comes first. After
``max_failed_logins`` wrong passwords in a row the account is locked for ``lockout_minutes``.

Permissions are a table (:data:`PERMISSIONS`), so the rule for an action lives in one
place: pages hide what a role cannot use, and the library functions behind each action
call :func:`require` again, so a crafted request cannot skip the check.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from healthmon.config import Settings
from healthmon.errors import HealthmonError, StorageError
from healthmon.storage.db import transaction
from healthmon.storage.models import ROLES, AuthSession, User, utcnow
from healthmon.storage.passwords import hash_password, needs_rehash, verify_password
from healthmon.storage.repository import audit, audit_entries, check_password_strength, create_user
from healthmon.types import as_utc

ALL_ROLES = frozenset(ROLES)
PERMISSIONS: dict[str, frozenset[str]] = {
    "cases.view": ALL_ROLES,
    "models.view": ALL_ROLES,
    "cases.review": ALL_ROLES,
    "notes.predict": frozenset({"clinician", "admin"}),
    "explain.batch": frozenset({"clinician", "admin"}),
    "vitals.upload": frozenset({"clinician", "admin"}),
    # Drafting, approving, editing or dismissing advice, and the patient report: clinical decisions.
    "advice.decide": frozenset({"clinician", "admin"}),
    "cases.adjudicate": frozenset({"admin"}),
    "agreement.view": frozenset({"admin"}),
    # Every reviewed note's text with its labels, out of the system (a file or a download).
    "labels.export": frozenset({"admin"}),
    "models.train": frozenset({"admin"}),
    "models.promote": frozenset({"admin"}),
    "users.manage": frozenset({"admin"}),
    "audit.view": frozenset({"admin"}),
}


class AuthError(HealthmonError):
    """Sign-in refused or session no longer valid."""


class PermissionDenied(HealthmonError):
    """The signed-in role may not perform this action."""


@dataclass(frozen=True)
class SignedIn:
    """Who is signed in: a plain value, safe to keep in a browser session between reruns."""

    user_id: int
    name: str
    role: str
    token: str = field(repr=False)  # a bearer secret: never in logs or tracebacks
    expires_at: datetime

    def can(self, permission: str) -> bool:
        return can(self.role, permission)


def can(role: str, permission: str) -> bool:
    if permission not in PERMISSIONS:
        raise KeyError(f"unknown permission {permission!r}")
    return role in PERMISSIONS[permission]


def require(user: SignedIn | None, permission: str) -> SignedIn:
    """The user, if their role allows ``permission``; otherwise a clear refusal."""
    if user is None:
        raise AuthError("a signed-in user", "no session", "sign in on the home page")
    if not can(user.role, permission):
        allowed = ", ".join(sorted(PERMISSIONS[permission]))
        raise PermissionDenied(f"one of the roles {allowed} to {permission.replace('.', ' ')}",
                               f"{user.name} signed in as {user.role}", "ask an admin to do it or to change your role")
    return user


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()




REFUSED = AuthError("a known user name and its password", "a name or password that does not match",
                    "check both and try again; after repeated wrong passwords an account is locked for a few "
                    "minutes, and an admin can reset a forgotten password or reactivate an account")


def sign_in(factory: sessionmaker[Session], name: str, password: str, settings: Settings, *,
            now: datetime | None = None) -> SignedIn:
    """A new session for a correct name and password; every attempt is audited.

    The refusal is the same for an unknown name and a wrong password, so the form does not
    reveal which accounts exist. A refusal is committed (failed-attempt count, lock, audit
    entry) before it is raised.
    """
    with transaction(factory) as session:
        outcome = _attempt(session, name, password, settings, now or utcnow())
    if isinstance(outcome, AuthError):
        raise outcome
    return outcome


def check_session(factory: sessionmaker[Session], token: str | None, settings: Settings, *,
                  now: datetime | None = None) -> SignedIn:
    """The signed-in user for a token, refreshing its idle timer; AuthError when it has ended.

    The role is read afresh each time, so a role change or deactivation applies at once.
    """
    with transaction(factory) as session:
        outcome = _check(session, token, settings, now or utcnow())
    if isinstance(outcome, AuthError):
        raise outcome
    return outcome


# Verified when the name is unknown, so a refusal takes as long whether or not the account exists.
_DUMMY_HASH = hash_password("healthmon-dummy-password")


def _refused_name(name: str) -> str:
    # A password typed into the name box must not land in the audit log in clear.
    return "unknown:" + hashlib.sha256(name.strip().encode("utf-8")).hexdigest()[:12]


def _attempt(session: Session, name: str, password: str, settings: Settings, now: datetime) -> SignedIn | AuthError:
    user = session.scalar(select(User).where(User.name == name.strip()))
    if user is None or not user.password_hash:
        verify_password(password, _DUMMY_HASH)
        audit(session, _refused_name(name), "auth.refused", "user", "-", after={"reason": "unknown user"})
        return REFUSED
    correct = verify_password(password, user.password_hash)
    locked_until = as_utc(user.locked_until)
    # Locked and deactivated accounts get the same refusal as a wrong password (it mentions
    # both), so the form never confirms that a name exists.
    if locked_until is not None and locked_until > now:
        audit(session, user.name, "auth.refused", "user", user.id, after={"reason": "locked"})
        return REFUSED
    if not user.active:
        audit(session, user.name, "auth.refused", "user", user.id, after={"reason": "deactivated"})
        return REFUSED
    if not correct:
        # Counted in the database, not read-modify-write: parallel guesses cannot overwrite
        # each other's count and so escape the lock.
        failures = session.execute(update(User).where(User.id == user.id)
                                   .values(failed_logins=User.failed_logins + 1)
                                   .returning(User.failed_logins)).scalar_one()
        reason = "wrong password"
        if failures >= settings.max_failed_logins:
            session.execute(update(User).where(User.id == user.id)
                            .values(locked_until=now + timedelta(minutes=settings.lockout_minutes), failed_logins=0))
            reason = "wrong password; account locked"
        audit(session, user.name, "auth.refused", "user", user.id, after={"reason": reason})
        return REFUSED
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.failed_logins, user.locked_until, user.last_login_at = 0, None, now
    token = secrets.token_urlsafe(32)
    expires = now + timedelta(hours=settings.session_max_hours)
    session.add(AuthSession(token_hash=_token_hash(token), user_id=user.id, created_at=now, last_seen_at=now,
                            expires_at=expires))
    audit(session, user.name, "auth.sign_in", "user", user.id)
    return SignedIn(user.id, user.name, user.role, token, expires)


def _check(session: Session, token: str | None, settings: Settings, now: datetime) -> SignedIn | AuthError:
    if not token:
        return AuthError("a signed-in session", "none", "sign in on the home page")
    row = session.scalar(select(AuthSession).where(AuthSession.token_hash == _token_hash(token)))
    if row is None or row.revoked_at is not None:
        return AuthError("a current session", "a session that was signed out", "sign in again")
    idle_limit = as_utc(row.last_seen_at) + timedelta(minutes=settings.session_idle_minutes)
    if now >= as_utc(row.expires_at) or now >= idle_limit:
        row.revoked_at = now
        return AuthError("a current session", "a session that has expired", "sign in again")
    user = session.get(User, row.user_id)
    if user is None or not user.active:
        row.revoked_at = now
        return AuthError("an active account", "a deactivated account", "ask an admin to reactivate it")
    row.last_seen_at = now
    return SignedIn(user.id, user.name, user.role, token, as_utc(row.expires_at))


def sign_out(factory: sessionmaker[Session], token: str) -> None:
    with transaction(factory) as session:
        _sign_out(session, token)


def _sign_out(session: Session, token: str) -> None:
    row = session.scalar(select(AuthSession).where(AuthSession.token_hash == _token_hash(token)))
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
        user = session.get(User, row.user_id)
        audit(session, user.name if user else "?", "auth.sign_out", "user", row.user_id)


# ----------------------------------------------------------------------------- account management (admins)
def _account(session: Session, name: str) -> User:
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise StorageError("a known user", repr(name), "pick a name from the users list")
    return user


def _end_sessions(session: Session, user: User, *, keep: str | None = None) -> None:
    query = update(AuthSession).where(AuthSession.user_id == user.id, AuthSession.revoked_at.is_(None))
    if keep is not None:
        query = query.where(AuthSession.token_hash != _token_hash(keep))
    session.execute(query.values(revoked_at=utcnow()))


def add_user(factory: sessionmaker[Session], actor: SignedIn | None, name: str, role: str, password: str) -> None:
    """Create an account (admins only; ``actor=None`` is the command line, run by the operator)."""
    if actor is not None:
        require(actor, "users.manage")
    if not password:
        raise StorageError("a password", "none", "type one, or leave it to `healthmon users add` to generate one")
    with transaction(factory) as session:
        create_user(session, name, role, password, actor=actor.name if actor else "cli")


def set_role(factory: sessionmaker[Session], actor: SignedIn | None, name: str, role: str) -> None:
    if actor is not None:
        require(actor, "users.manage")
    if role not in ROLES:
        raise StorageError(f"a role among {', '.join(ROLES)}", repr(role), "pick one of those roles")
    with transaction(factory) as session:
        user = _account(session, name)
        _guard_last_admin(session, user, role=role)
        before = user.role
        user.role = role
        audit(session, actor.name if actor else "cli", "user.role", "user", user.id, before={"role": before},
              after={"role": role})


def set_password(factory: sessionmaker[Session], actor: SignedIn | None, name: str, password: str, *,
                 current_password: str | None = None) -> None:
    """Reset a password (admins, or the command line), or change one's own.

    Changing one's own password needs the current one, so a session left open on a shared
    computer cannot take the account over. Every other session of the account ends; the
    changer's own stays signed in.
    """
    with transaction(factory) as session:
        user = _account(session, name)
        if actor is not None and actor.name == name and not can(actor.role, "users.manage"):
            if current_password is None or not verify_password(current_password, user.password_hash):
                raise AuthError("your current password", "a missing or wrong one", "type your current password")
        elif actor is not None:
            require(actor, "users.manage")
        check_password_strength(password)
        user.password_hash, user.failed_logins, user.locked_until = hash_password(password), 0, None
        _end_sessions(session, user, keep=actor.token if actor is not None else None)
        audit(session, actor.name if actor else "cli", "user.password", "user", user.id)


def set_active(factory: sessionmaker[Session], actor: SignedIn | None, name: str, active: bool) -> None:
    if actor is not None:
        require(actor, "users.manage")
    with transaction(factory) as session:
        user = _account(session, name)
        if not active:
            _guard_last_admin(session, user, role=None)
            _end_sessions(session, user)
        before = user.active
        user.active = active
        audit(session, actor.name if actor else "cli", "user.activate" if active else "user.deactivate", "user",
              user.id, before={"active": before}, after={"active": active})


def _guard_last_admin(session: Session, user: User, *, role: str | None) -> None:
    """Refuse to leave the system without an active admin (nobody could manage users again)."""
    if user.role != "admin" or role == "admin":
        return
    admins = session.scalars(select(User).where(User.role == "admin", User.active.is_(True))).all()
    if len(admins) <= 1:
        raise StorageError("at least one other active admin", f"{user.name} is the only one",
                           "make another user admin first")


def accounts(factory: sessionmaker[Session], user: SignedIn | None) -> list[dict]:
    """Every account for the Admin page (``users.manage``) or the command line (``None``): no hashes."""
    if user is not None:
        require(user, "users.manage")
    with transaction(factory) as session:
        return [{"name": u.name, "role": u.role, "active": u.active, "can sign in": bool(u.password_hash),
                 "last sign-in": as_utc(u.last_login_at), "created": as_utc(u.created_at)}
                for u in session.scalars(select(User).order_by(User.name))]


def _has_accounts(session: Session) -> bool:
    return session.scalar(select(User.id).where(User.password_hash != "").limit(1)) is not None


def has_accounts(factory: sessionmaker[Session]) -> bool:
    """Whether anyone can sign in yet (the first run prints how to create an account)."""
    with transaction(factory) as session:
        return _has_accounts(session)


def audit_log(factory: sessionmaker[Session], user: SignedIn, *, action: str = "", actor: str = "",
              limit: int = 500) -> list[dict]:
    """The audit log for admins (see :func:`healthmon.storage.repository.audit_entries`)."""
    require(user, "audit.view")
    with transaction(factory) as session:
        return audit_entries(session, action=action, actor=actor, limit=limit)


DEMO_ACCOUNT = "demo"


def ensure_demo_account(factory: sessionmaker[Session]) -> tuple[str, str] | None:
    """A demo admin with a fresh random password, only while nobody can sign in yet.

    Returns (name, password) when it was created, so the caller can print it once; None
    when accounts exist already (the password is never stored in clear or shown again).
    """
    with transaction(factory) as session:
        if _has_accounts(session):
            return None
        password = secrets.token_urlsafe(12)
        create_user(session, DEMO_ACCOUNT, "admin", password, actor="cli")
    return DEMO_ACCOUNT, password
