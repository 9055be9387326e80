"""API tokens: the bearer secrets an account holds for the REST API.

Only a SHA-256 of each token is stored (as for sign-in sessions), so a copy of the database
cannot call the API; the token itself is shown once, when it is created, and cannot be
shown again (lose it: revoke it and create another). Each use reads the account afresh, so
a role change, a deactivation or a revocation applies to the very next request. Nothing
here knows about HTTP: the API turns the :class:`~healthmon.services.accounts.AuthError`
of :func:`authenticate` into its own refusal.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from healthmon.errors import StorageError
from healthmon.services.accounts import AuthError, SignedIn, require
from healthmon.storage.db import transaction
from healthmon.storage.models import ApiToken, User, utcnow
from healthmon.storage.repository import audit
from healthmon.types import as_utc

TOKEN_PREFIX = "hm_"
PREFIX_LENGTH = 8  # "hm_" and 5 random characters: enough to tell tokens apart in a list
MAX_DAYS = 366
NAME_LENGTH = 120
# A request stamps its token's last use only when the stamp is older than this, so a busy
# integration does not turn every API read into a database write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class TokenView:
    """A stored token as lists and pages show it: never the token, never its hash."""

    id: int
    account: str
    name: str
    prefix: str
    created_at: datetime
    created_by: str
    expires_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    @property
    def status(self) -> str:
        """``"revoked"``, ``"expired"`` or ``"active"``, as of now."""
        return self.status_at(utcnow())

    def status_at(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if now >= self.expires_at else "active"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: times as ISO 8601 text, the status as of now."""
        def iso(moment: datetime | None) -> str | None:
            return moment.isoformat() if moment is not None else None

        return {"id": self.id, "account": self.account, "name": self.name, "prefix": self.prefix,
                "status": self.status, "created_at": iso(self.created_at), "created_by": self.created_by,
                "expires_at": iso(self.expires_at), "revoked_at": iso(self.revoked_at),
                "last_used_at": iso(self.last_used_at)}


def _hash(token: str) -> str:
    # UTF-8, not ASCII: a header may carry anything, and a stray character must be an unknown
    # token, not an encoding error.
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _actor_name(actor: SignedIn | None) -> str:
    return actor.name if actor is not None else "cli"


def _allowed(factory: sessionmaker[Session], actor: SignedIn | None) -> None:
    # None is the command line, run by the operator (as in accounts.add_user).
    if actor is not None:
        require(factory, actor, "users.manage")


def _view(row: ApiToken, account: str) -> TokenView:
    return TokenView(id=row.id, account=account, name=row.name, prefix=row.prefix,
                     created_at=as_utc(row.created_at), created_by=row.created_by,
                     expires_at=as_utc(row.expires_at), revoked_at=as_utc(row.revoked_at),
                     last_used_at=as_utc(row.last_used_at))


def _account(session: Session, name: str) -> User:
    user = session.scalar(select(User).where(User.name == name.strip()))
    if user is None:
        raise StorageError("a known user", repr(name), "pick a name from the users list")
    return user


def create_token(factory: sessionmaker[Session], actor: SignedIn | None, account: str, name: str, *,
                 days: float = 90, now: datetime | None = None) -> tuple[str, TokenView]:
    """A new API token for ``account`` (admins, or ``actor=None`` for the command line).

    Args:
        account: the user name the token acts as; its role is read at each use.
        name: a label for the token ("epic-integration"), to recognise it in lists.
        days: lifetime, more than 0 and at most 366.

    Returns:
        (token, view): the token in clear, to hand over now (it is not stored and cannot be
        shown again), and what lists show of it.

    Raises:
        PermissionDenied: the actor may not manage users.
        StorageError: an unknown or deactivated account, an empty or too long label, or
            a lifetime out of range.
    """
    _allowed(factory, actor)
    label = name.strip()
    if not label:
        raise StorageError("a label for the token", "an empty one",
                           "name what will use it, e.g. epic-integration")
    if len(label) > NAME_LENGTH:
        raise StorageError(f"a label of at most {NAME_LENGTH} characters", f"{len(label)} characters",
                           "shorten it")
    if not 0 < days <= MAX_DAYS:  # written so that NaN is refused too
        raise StorageError(f"a lifetime of more than 0 and at most {MAX_DAYS} days", repr(days),
                           "pick a lifetime in that range; create a new token when it runs out")
    now = now or utcnow()
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction(factory) as session:
        user = _account(session, account)
        if not user.active:
            raise StorageError("an active account", f"{user.name} is deactivated",
                               "reactivate the account first, or pick another")
        row = ApiToken(user_id=user.id, name=label, token_hash=_hash(token), prefix=token[:PREFIX_LENGTH],
                       created_at=now, created_by=_actor_name(actor), expires_at=now + timedelta(days=days))
        session.add(row)
        session.flush()
        view = _view(row, user.name)
        audit(session, _actor_name(actor), "token.create", "user", user.id,
              after={"token_id": row.id, "name": label, "prefix": row.prefix,
                     "expires_at": view.expires_at.isoformat()})
    return token, view


def list_tokens(factory: sessionmaker[Session], actor: SignedIn | None, account: str | None = None) -> list[TokenView]:
    """Every token (revoked and expired ones too), or one account's, by account then age.

    Raises:
        PermissionDenied: the actor may not manage users.
        StorageError: ``account`` names no user.
    """
    _allowed(factory, actor)
    with transaction(factory) as session:
        query = select(ApiToken, User.name).join(User, User.id == ApiToken.user_id).order_by(User.name, ApiToken.id)
        if account is not None:
            query = query.where(ApiToken.user_id == _account(session, account).id)
        return [_view(row, owner) for row, owner in session.execute(query)]


def _revoke(session: Session, actor: SignedIn | None, row: ApiToken, now: datetime) -> None:
    row.revoked_at, row.revoked_by = now, _actor_name(actor)
    audit(session, _actor_name(actor), "token.revoke", "user", row.user_id,
          after={"token_id": row.id, "name": row.name, "prefix": row.prefix})


def revoke_token(factory: sessionmaker[Session], actor: SignedIn | None, token_id: int) -> TokenView:
    """Revoke one token; it stops working at once.

    Revoking a token that is revoked already is a no-op: it returns the token as it is,
    keeping the first revocation's time, and writes no second audit entry.

    Raises:
        PermissionDenied: the actor may not manage users.
        StorageError: no token has this id.
    """
    _allowed(factory, actor)
    with transaction(factory) as session:
        row = session.get(ApiToken, token_id)
        if row is None:
            raise StorageError("a known token id", repr(token_id), "pick an id from `healthmon users token list`")
        if row.revoked_at is None:
            _revoke(session, actor, row, utcnow())
        return _view(row, session.get(User, row.user_id).name)


def revoke_account_tokens(factory: sessionmaker[Session], actor: SignedIn | None, account: str) -> int:
    """Revoke every token of ``account`` not revoked yet (expired ones too); returns how many.

    Raises:
        PermissionDenied: the actor may not manage users.
        StorageError: ``account`` names no user.
    """
    _allowed(factory, actor)
    now = utcnow()
    with transaction(factory) as session:
        user = _account(session, account)
        rows = session.scalars(select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
                               .order_by(ApiToken.id)).all()
        for row in rows:
            _revoke(session, actor, row, now)
        return len(rows)


def authenticate(factory: sessionmaker[Session], token: str | None, *, now: datetime | None = None) -> SignedIn:
    """The account a bearer token acts as, its role read afresh from ``users``.

    Stamps the token's last use, at most once a minute. The refusals never quote the token.

    Returns:
        SignedIn whose ``token`` is this token and ``expires_at`` the token's expiry.

    Raises:
        AuthError: no token, an unknown or revoked one, an expired one, or one whose account
            is deactivated (it works again if the account is reactivated before it expires).
    """
    if not token:
        raise AuthError("an API token", "none", "send `Authorization: Bearer <token>`; an admin creates tokens "
                        "with `healthmon users token create NAME`")
    now = now or utcnow()
    with transaction(factory) as session:
        row = session.scalar(select(ApiToken).where(ApiToken.token_hash == _hash(token)))
        if row is None or row.revoked_at is not None:
            raise AuthError("a current API token", "one that is unknown or revoked",
                            "check that the whole token was copied, or ask an admin for a new one")
        expires = as_utc(row.expires_at)
        if now >= expires:
            raise AuthError("a current API token", f"a token that expired {expires:%Y-%m-%d %H:%M} UTC",
                            "ask an admin for a new one")
        user = session.get(User, row.user_id)
        if user is None or not user.active:
            raise AuthError("a token of an active account", "a token of a deactivated account",
                            "ask an admin to reactivate the account")
        last = as_utc(row.last_used_at)
        if last is None or now - last >= LAST_USED_RESOLUTION:
            row.last_used_at = now
        return SignedIn(user.id, user.name, user.role, token, expires)
