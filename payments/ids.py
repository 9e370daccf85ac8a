"""Public ids: a type prefix and 26 Crockford base32 characters, time-ordered like a ULID.

Time order keeps new rows at the right-hand edge of the unique index, so inserting stays cheap on a table of
millions; 80 random bits make ids unguessable.
"""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def new_public_id(prefix: str) -> str:
    value = (time.time_ns() // 1_000_000) << 80 | secrets.randbits(80)
    chars = []
    for _ in range(26):
        value, index = divmod(value, 32)
        chars.append(_ALPHABET[index])
    return f"{prefix}_{''.join(reversed(chars))}"
