"""What a new password must be: long enough, not a common one, and hard to guess.

Three checks, cheapest first: at least :data:`MIN_PASSWORD_LENGTH` characters; not one of the
10,000 most common passwords (``common_passwords.txt``, compared case-insensitively); and a
zxcvbn score of at least :data:`MIN_SCORE` (0-4), with the account's name among the words an
attacker would try first. Refusals say what zxcvbn found, never the password.

``common_passwords.txt`` is the top of zxcvbn's own bundled frequency list, made with::

    from zxcvbn.frequency_lists import FREQUENCY_LISTS
    top = list(dict.fromkeys(w.lower() for w in FREQUENCY_LISTS["passwords"]))[:10000]
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from zxcvbn import zxcvbn

from healthmon.errors import StorageError

MIN_PASSWORD_LENGTH = 10
MIN_SCORE = 3  # zxcvbn: 3 = "safely unguessable", about 10^8 guesses or more
COMMON_PASSWORDS = Path(__file__).with_name("common_passwords.txt")
# zxcvbn refuses longer input; the first 72 characters of a strong password are strong enough.
_ZXCVBN_MAX = 72
# zxcvbn keeps the user inputs of the call in a module-level dictionary while it scores, so two
# threads scoring at once could each see the other's account name.
_ZXCVBN_LOCK = threading.Lock()
_HOW = "choose a passphrase of four or more unrelated words, or let healthmon generate a password"


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    lines = COMMON_PASSWORDS.read_text(encoding="utf-8").splitlines()
    return frozenset(line for line in lines if line and not line.startswith("#"))


def check_password_strength(password: str, user_inputs: Iterable[str] = ()) -> None:
    """Refuse a weak password with a StorageError saying why; ``user_inputs``: the account's
    name and anything else about it that a guesser would try."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise StorageError(f"a password of at least {MIN_PASSWORD_LENGTH} characters", f"{len(password)} characters",
                           "choose a longer password (a passphrase of a few words works well)")
    if password.lower() in common_passwords():
        raise StorageError("a password that is not a common one", "one of the 10,000 most common passwords",
                           _HOW)
    inputs = [part for text in user_inputs if text for part in {text.strip(), *text.replace("_", "-").split("-")}
              if part]
    with _ZXCVBN_LOCK:
        result = zxcvbn(password[:_ZXCVBN_MAX], user_inputs=inputs)
    if result["score"] < MIN_SCORE:
        feedback = result.get("feedback") or {}
        said = " ".join([feedback.get("warning") or "", *(feedback.get("suggestions") or [])]).strip()
        guessed = result["crack_times_display"]["offline_slow_hashing_1e4_per_second"]
        raise StorageError(f"a password that is hard to guess (strength {MIN_SCORE} of 4 or more)",
                           f"strength {result['score']} of 4, guessed in {guessed} offline"
                           + (f"; {said}" if said else ""), _HOW)
