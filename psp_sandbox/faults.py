"""Fault injection, reproducible from a seed.

Every fault decision is a pure function of (seed, fault kind, identity, attempt): the first 8 bytes of
``sha256(f"{seed}|{kind}|{identity}|{attempt}")`` read as a number in [0, 1), compared with the fault's rate. Nothing
depends on thread scheduling, clocks or which worker serves a call, so the same seed and the same calls give the same
faults. What ``identity`` is depends on the fault:

- webhooks: the event's ``fault_identity`` (the idempotency key of the request that caused it, the event type and
  its ordinal in that request; or, for events no request caused, the object's id and the event type); attempt 0;
- reports: the report date and the balance transaction's id.
"""

from __future__ import annotations

import hashlib


def draw(seed: str, kind: str, identity: str, attempt: int = 0) -> float:
    digest = hashlib.sha256(f"{seed}|{kind}|{identity}|{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def fires(rate: float, *, seed: str, kind: str, identity: str, attempt: int = 0) -> bool:
    """Whether the fault ``kind`` strikes this (identity, attempt). Rate 0 never fires, rate 1 always does."""
    if rate <= 0:
        return False
    if rate >= 1:
        return True
    return draw(seed, kind, identity, attempt) < rate
