"""Fault injection, reproducible from a seed.

Every fault decision is a pure function of (seed, fault kind, identity, attempt): the first 8 bytes of
``sha256(f"{seed}|{kind}|{identity}|{attempt}")`` read as a number in [0, 1), compared with the fault's rate. Nothing
depends on thread scheduling, clocks or which worker serves a call, so the same seed and the same calls give the same
faults. What ``identity`` is depends on the fault:

- API calls: method, path and the ``Idempotency-Key`` (a POST without one: its parameters' fingerprint; a GET: its
  query string); attempt = how many times that identity was seen before (``FaultAttempt``, shared by every worker),
  so a client's retries of one call get the seed's sequence of decisions, whichever worker serves them. The faults
  are tried in this order and the first that strikes wins: connection reset (nothing done), 429 (nothing done),
  500 (nothing done), timeout (held ``fault_timeout_seconds``, then done, answering a client that has gone), lost
  response (done and committed, then the connection reset without an answer). ``latency_ms`` delays every call;
- webhooks: the event's ``fault_identity`` (the idempotency key of the request that caused it, the event type and
  its ordinal in that request; or, for events no request caused, the object's id and the event type); attempt 0;
- reports: the report date and the balance transaction's id.
"""

from __future__ import annotations

import errno
import hashlib
import socket
import struct
from typing import Any

from django.db import connection

from psp_sandbox import knobs

# Set in a request's WSGI environ to have psp_sandbox/wsgi.py reset the connection instead of answering.
RESET_MARK = "psp_sandbox.reset_connection"
API_FAULTS = ("reset", "429", "5xx", "timeout", "lost_response")


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


def api_fault(config: knobs.Config, identity: str, attempt: int) -> str | None:
    """Which API fault strikes this call (the first of API_FAULTS that fires), or None."""
    rates = {
        "reset": config.fault_reset_rate,
        "429": config.fault_429_rate,
        "5xx": config.fault_5xx_rate,
        "timeout": config.fault_timeout_rate,
        "lost_response": config.fault_lost_response_rate,
    }
    for kind in API_FAULTS:
        if fires(rates[kind], seed=config.fault_seed, kind=f"api_{kind}", identity=identity, attempt=attempt):
            return kind
    return None


def attempt_of(identity: str) -> int:
    """0 the first time ``identity`` is seen, then 1, 2, … (one upsert, outside any transaction of the call)."""
    digest = hashlib.sha256(identity.encode()).hexdigest()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO psp_sandbox_faultattempt (identity, count) VALUES (%s, 1) "
            "ON CONFLICT (identity) DO UPDATE SET count = psp_sandbox_faultattempt.count + 1 RETURNING count",
            [digest],
        )
        return int(cursor.fetchone()[0]) - 1


def reset_connection(environ: dict[str, Any]) -> None:
    """Abort the TCP connection: SO_LINGER 0 and close, so the client sees a reset (RST), not a clean close; then
    raise the error gunicorn expects from a reset peer, so it drops the request quietly."""
    sock = environ.get("gunicorn.socket")
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    raise ConnectionResetError(errno.ECONNRESET, "sandbox fault: connection reset")
