"""Sign-in, sessions and roles: who may do what, checked by every page and every action.

Accounts live in the database (``users``) with argon2id password hashes. Signing in
creates an ``auth_sessions`` row holding only a SHA-256 of a random token; the token
itself stays in the user's browser session. A session ends after ``session_idle_minutes``
without activity or ``session_max_hours`` after sign-in, whichever comes first.

Password guessing is slowed twice over. Per account: ``max_failed_logins`` wrong passwords in
a row lock it for ``lockout_minutes``, the next round for ``lockout_second_minutes``, and the
round after that until an admin unlocks it (:func:`unlock`); a successful sign-in starts the
escalation over. Per client address: one that failed ``max_failed_logins_per_address`` times
within ``failed_login_window_minutes``, whatever accounts it tried, is refused before any
password is checked. A locked or deactivated account costs the same hashing as any other
refusal, so the time a refusal takes does not tell a guesser that the account is locked.

Permissions are a table (:data:`PERMISSIONS`), so the rule for an action lives in one
place: pages hide what a role cannot use, and the library functions behind each action
call :func:`require` again, so a crafted request cannot skip the check. :func:`require`
reads the account's role and state from the database, not from the :class:`SignedIn` it is
handed, so a role taken away or an account deactivated is refused at once.
"""

from __future__ import annotations

import hashlib
import secrets
import string
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from healthmon.config import Settings
from healthmon.errors import HealthmonError, StorageError
from healthmon.storage.db import transaction
from healthmon.storage.models import ROLES, AuthSession, SignInFailure, User, utcnow
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


def require(factory: sessionmaker[Session], user: SignedIn | None, permission: str) -> SignedIn:
    """The user as the database has them now, if that account is active and its current role
    allows ``permission``; otherwise a clear refusal.

    The role is read from ``users``, never taken from ``user``: a SignedIn kept in a browser
    session, a job or a cache may predate a role change or a deactivation.

    Raises:
        AuthError: no user, or an account that is deactivated or no longer exists.
        PermissionDenied: the account's current role does not allow ``permission``.
    """
    with transaction(factory) as session:
        return require_in(session, user, permission)


def require_in(session: Session, user: SignedIn | None, permission: str | None) -> SignedIn:
    """:func:`require` inside a transaction the caller already holds; ``permission=None`` only
    checks that the account is still active (and returns its current role)."""
    if user is None:
        raise AuthError("a signed-in user", "no session", "sign in on the home page")
    row = session.get(User, user.user_id)
    if row is None or row.name != user.name or not row.active:
        raise AuthError("an active account", f"the account {user.name} is deactivated or gone",
                        "sign in again, or ask an admin to reactivate the account")
    fresh = SignedIn(row.id, row.name, row.role, user.token, user.expires_at)
    return check_role(fresh, permission) if permission is not None else fresh


def check_role(user: SignedIn, permission: str) -> SignedIn:
    """The user, if the role it carries allows ``permission``: only for a SignedIn read from the
    database moments ago (by :func:`require_in`, or the API's per-request token lookup);
    anything older goes through :func:`require`."""
    if not can(user.role, permission):
        allowed = ", ".join(sorted(PERMISSIONS[permission]))
        raise PermissionDenied(f"one of the roles {allowed} to {permission.replace('.', ' ')}",
                               f"{user.name} signed in as {user.role}", "ask an admin to do it or to change your role")
    return user


def token_hash(token: str) -> str:
    """What ``auth_sessions`` stores of a session token (the token itself stays with the browser)."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()




REFUSED = AuthError("a known user name and its password", "a name or password that does not match",
                    "check both and try again; after repeated wrong passwords an account is locked for a few "
                    "minutes, then for longer, and at last until an admin unlocks it; an admin can also reset "
                    "a forgotten password or reactivate an account")
# The third lock of a row holds until an admin unlocks the account.
ADMIN_UNLOCK_LEVEL = 3


def sign_in(factory: sessionmaker[Session], name: str, password: str, settings: Settings, *,
            now: datetime | None = None, address: str | None = None) -> SignedIn:
    """A new session for a correct name and password; every attempt is audited.

    The refusal is the same for an unknown name, a wrong password, a locked and a deactivated
    account, so the form does not reveal which accounts exist or are locked. A refusal is
    committed (failed-attempt counts, lock, audit entry) before it is raised.

    Args:
        address: the client's address (as the proxy in front reports it), counted for
            ``max_failed_logins_per_address``; None where it is unknown (not counted).
    """
    with transaction(factory) as session:
        outcome = _attempt(session, name, password, settings, now or utcnow(), (address or "").strip()[:100] or None)
    if isinstance(outcome, AuthError):
        raise outcome
    return outcome


def check_session(factory: sessionmaker[Session], token: str | None, settings: Settings, *,
                  now: datetime | None = None, touch: bool = True) -> SignedIn:
    """The signed-in user for a token, refreshing its idle timer; AuthError when it has ended.

    The role is read afresh each time, so a role change or deactivation applies at once.
    ``touch=False`` checks without counting as activity: a page's automatic poll must not keep
    an unattended screen signed in past the idle limit.
    """
    with transaction(factory) as session:
        outcome = _check(session, token, settings, now or utcnow(), touch=touch)
    if isinstance(outcome, AuthError):
        raise outcome
    return outcome


# Verified when the name is unknown, so a refusal takes as long whether or not the account exists.
_DUMMY_HASH = hash_password("healthmon-dummy-password")


def _refused_name(name: str) -> str:
    # A password typed into the name box must not land in the audit log in clear.
    return "unknown:" + hashlib.sha256(name.strip().encode("utf-8")).hexdigest()[:12]


def _refuse(session: Session, actor: str, entity_id: object, reason: str, address: str | None, now: datetime,
            *, count: bool = True) -> AuthError:
    """Audit a refusal (and count it against the address); the error to raise."""
    if count and address is not None:
        session.add(SignInFailure(address=address, at=now))
    after = {"reason": reason, **({"address": address} if address is not None else {})}
    audit(session, actor, "auth.refused", "user", entity_id, after=after)
    return REFUSED


def _address_blocked(session: Session, address: str | None, settings: Settings, now: datetime) -> bool:
    if address is None:
        return False
    since = now - timedelta(minutes=settings.failed_login_window_minutes)
    # Failures that left the window count for nothing: deleted here, so the table stays small.
    session.execute(delete(SignInFailure).where(SignInFailure.at < since))
    failures = session.scalar(select(func.count()).select_from(SignInFailure)
                              .where(SignInFailure.address == address, SignInFailure.at >= since))
    return (failures or 0) >= settings.max_failed_logins_per_address


def is_locked(user: User, now: datetime) -> bool:
    """Whether the account refuses every sign-in now (a lock that has not run out, or one that
    waits for an admin)."""
    locked_until = as_utc(user.locked_until)
    return user.lockout_level >= ADMIN_UNLOCK_LEVEL or (locked_until is not None and locked_until > now)


def _lock_minutes(level: int, settings: Settings) -> float | None:
    """How long the ``level``-th lock in a row lasts; None: until an admin unlocks it."""
    return {1: settings.lockout_minutes, 2: settings.lockout_second_minutes}.get(level)


def _attempt(session: Session, name: str, password: str, settings: Settings, now: datetime,
             address: str | None) -> SignedIn | AuthError:
    # Before anything is hashed: an address guessing across many accounts costs nothing more.
    if _address_blocked(session, address, settings, now):
        # Not counted itself: the address is let in again once its counted failures age out.
        _refuse(session, _refused_name(name), "-", "too many attempts from this address", address, now, count=False)
        return AuthError("fewer failed sign-ins from one address", "too many attempts from this address",
                         f"try later: failures are counted over {settings.failed_login_window_minutes:g} minutes")
    user = session.scalar(select(User).where(User.name == name.strip()))
    if user is None or not user.password_hash:
        verify_password(password, _DUMMY_HASH)
        return _refuse(session, _refused_name(name), "-", "unknown user", address, now)
    # Locked and deactivated accounts get the same refusal as a wrong password (it mentions
    # both), so the form never confirms that a name exists. Their password is never checked (a
    # guess during a lock learns nothing), but the dummy hash costs the same time, so the delay
    # does not tell that the account is locked either.
    if is_locked(user, now) or not user.active:
        verify_password(password, _DUMMY_HASH)
        return _refuse(session, user.name, user.id, "locked" if user.active else "deactivated", address, now)
    if not verify_password(password, user.password_hash):
        # Counted in the database, not read-modify-write: parallel guesses cannot overwrite
        # each other's count and so escape the lock. Only while unlocked: guesses that were
        # already being hashed when a parallel one locked the account do not push it on to
        # the next, longer lock.
        unlocked = ((User.lockout_level < ADMIN_UNLOCK_LEVEL)
                    & (User.locked_until.is_(None) | (User.locked_until <= now)))
        failures = session.execute(update(User).where(User.id == user.id, unlocked)
                                   .values(failed_logins=User.failed_logins + 1)
                                   .returning(User.failed_logins),
                                   execution_options={"synchronize_session": False}).scalar_one_or_none()
        if failures is None:
            return _refuse(session, user.name, user.id, "locked", address, now)
        reason = "wrong password"
        if failures >= settings.max_failed_logins:
            level = session.execute(update(User).where(User.id == user.id)
                                    .values(lockout_level=User.lockout_level + 1, failed_logins=0)
                                    .returning(User.lockout_level)).scalar_one()
            minutes = _lock_minutes(level, settings)
            until = now + timedelta(minutes=minutes) if minutes is not None else None
            session.execute(update(User).where(User.id == user.id).values(locked_until=until))
            reason = ("wrong password; account locked" if minutes is not None
                      else "wrong password; account locked until an admin unlocks it")
        return _refuse(session, user.name, user.id, reason, address, now)
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.failed_logins, user.locked_until, user.lockout_level = 0, None, 0
    signed_in = open_session(session, user, secrets.token_urlsafe(32), settings, now)
    audit(session, user.name, "auth.sign_in", "user", user.id, after={"address": address} if address else None)
    return signed_in


def open_session(session: Session, user: User, token: str, settings: Settings, now: datetime) -> SignedIn:
    """A new ``auth_sessions`` row for ``user`` under ``token`` (a password sign-in's random token,
    or one derived from a provider sign-in), ending ``session_max_hours`` from now."""
    user.last_login_at = now
    expires = now + timedelta(hours=settings.session_max_hours)
    session.add(AuthSession(token_hash=token_hash(token), user_id=user.id, created_at=now, last_seen_at=now,
                            expires_at=expires))
    return SignedIn(user.id, user.name, user.role, token, expires)


def _check(session: Session, token: str | None, settings: Settings, now: datetime, *,
           touch: bool = True) -> SignedIn | AuthError:
    if not token:
        return AuthError("a signed-in session", "none", "sign in on the home page")
    row = session.scalar(select(AuthSession).where(AuthSession.token_hash == token_hash(token)))
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
    if touch:
        row.last_seen_at = now
    return SignedIn(user.id, user.name, user.role, token, as_utc(row.expires_at))


def sign_out(factory: sessionmaker[Session], token: str) -> None:
    with transaction(factory) as session:
        _sign_out(session, token)


def _sign_out(session: Session, token: str) -> None:
    row = session.scalar(select(AuthSession).where(AuthSession.token_hash == token_hash(token)))
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
        query = query.where(AuthSession.token_hash != token_hash(keep))
    session.execute(query.values(revoked_at=utcnow()))


def _manager(session: Session, actor: SignedIn | None) -> str:
    """The name to audit for an account change: an admin (``users.manage``, checked against the
    database) or, for ``actor=None``, the command line run by the operator."""
    return require_in(session, actor, "users.manage").name if actor is not None else "cli"


def add_user(factory: sessionmaker[Session], actor: SignedIn | None, name: str, role: str, password: str) -> None:
    """Create an account (admins only; ``actor=None`` is the command line, run by the operator)."""
    with transaction(factory) as session:
        who = _manager(session, actor)
        if not password:
            raise StorageError("a password", "none", "type one, or leave it to `healthmon users add` to generate one")
        create_user(session, name, role, password, actor=who)


def set_role(factory: sessionmaker[Session], actor: SignedIn | None, name: str, role: str) -> None:
    with transaction(factory) as session:
        who = _manager(session, actor)
        if role not in ROLES:
            raise StorageError(f"a role among {', '.join(ROLES)}", repr(role), "pick one of those roles")
        user = _account(session, name)
        _guard_last_admin(session, user, role=role)
        before = user.role
        user.role = role
        audit(session, who, "user.role", "user", user.id, before={"role": before},
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
        me = require_in(session, actor, None) if actor is not None else None  # the role as it is now
        if me is not None and me.name == name and not can(me.role, "users.manage"):
            if current_password is None or not verify_password(current_password, user.password_hash):
                raise AuthError("your current password", "a missing or wrong one", "type your current password")
        elif me is not None:
            require_in(session, me, "users.manage")
        check_password_strength(password, [user.name])
        user.password_hash, user.failed_logins, user.locked_until = hash_password(password), 0, None
        user.lockout_level = 0  # the person who knows the new password starts with a clean slate
        _end_sessions(session, user, keep=actor.token if actor is not None else None)
        audit(session, actor.name if actor else "cli", "user.password", "user", user.id)


def set_active(factory: sessionmaker[Session], actor: SignedIn | None, name: str, active: bool) -> None:
    with transaction(factory) as session:
        who = _manager(session, actor)
        user = _account(session, name)
        if not active:
            _guard_last_admin(session, user, role=None)
            _end_sessions(session, user)
        before = user.active
        user.active = active
        audit(session, who, "user.activate" if active else "user.deactivate", "user",
              user.id, before={"active": before}, after={"active": active})


def _guard_last_admin(session: Session, user: User, *, role: str | None) -> None:
    """Refuse to leave the system without an active admin (nobody could manage users again)."""
    if user.role != "admin" or role == "admin":
        return
    admins = session.scalars(select(User).where(User.role == "admin", User.active.is_(True))).all()
    if len(admins) <= 1:
        raise StorageError("at least one other active admin", f"{user.name} is the only one",
                           "make another user admin first")


def unlock(factory: sessionmaker[Session], actor: SignedIn | None, name: str) -> None:
    """Lift an account's lock and start its escalation over (admins, or ``actor=None`` for the
    command line). The only way out of the third lock in a row; audited even when not locked."""
    with transaction(factory) as session:
        who = _manager(session, actor)
        user = _account(session, name)
        before = {"locked_until": _iso(as_utc(user.locked_until)), "lockout_level": user.lockout_level,
                  "failed_logins": user.failed_logins}
        user.locked_until, user.lockout_level, user.failed_logins = None, 0, 0
        audit(session, who, "user.unlock", "user", user.id, before=before)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _lock_text(user: User, now: datetime) -> str:
    if user.lockout_level >= ADMIN_UNLOCK_LEVEL:
        return "until an admin unlocks it"
    locked_until = as_utc(user.locked_until)
    return f"until {locked_until:%Y-%m-%d %H:%M} UTC" if locked_until is not None and locked_until > now else ""


def accounts(factory: sessionmaker[Session], user: SignedIn | None) -> list[dict]:
    """Every account for the Admin page (``users.manage``) or the command line (``None``): no
    hashes. ``locked`` is empty, or says until when the account refuses every sign-in."""
    now = utcnow()
    with transaction(factory) as session:
        _manager(session, user)
        return [{"name": u.name, "role": u.role, "active": u.active, "can sign in": bool(u.password_hash),
                 "locked": _lock_text(u, now), "last sign-in": as_utc(u.last_login_at),
                 "created": as_utc(u.created_at)}
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
    with transaction(factory) as session:
        require_in(session, user, "audit.view")
        return audit_entries(session, action=action, actor=actor, limit=limit)


# The demo admin's name ends in random characters: a well-known name ("demo") would leave a
# guesser only the password to find on an installation where nobody replaced the demo account.
DEMO_ACCOUNT_PREFIX = "demo-admin-"


def ensure_demo_account(factory: sessionmaker[Session]) -> tuple[str, str] | None:
    """A demo admin (``demo-admin-`` and 6 random characters) with a fresh random password,
    only while nobody can sign in yet.

    Returns (name, password) when it was created, so the caller can print it once; None
    when accounts exist already (the password is never stored in clear or shown again).
    """
    with transaction(factory) as session:
        if _has_accounts(session):
            return None
        name = DEMO_ACCOUNT_PREFIX + "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(6))
        password = secrets.token_urlsafe(12)
        create_user(session, name, "admin", password, actor="cli")
    return name, password
