"""Which API request the current code runs for: its ``Request-Id`` and ``Idempotency-Key``, which Stripe copies into
every event the request caused (``event.request``), a count of the events it emitted so far (part of an event's
fault identity), and the id of its database transaction once the idempotency layer has read it. Set by
psp_sandbox/endpoint.py around each call; unset for the clock and the hosted pages.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass
class RequestContext:
    request_id: str
    idempotency_key: str | None
    emitted: Counter[str] = field(default_factory=Counter)
    # PostgreSQL's id of the request's transaction, once the idempotency layer has read it (events carry it).
    transaction_id: int | None = None


_current: ContextVar[RequestContext | None] = ContextVar("psp_sandbox_request", default=None)


@contextmanager
def request_scope(request_id: str, idempotency_key: str | None) -> Iterator[RequestContext]:
    # gunicorn's threads serve one request after another: the context must be unset again when the call is over.
    context = RequestContext(request_id, idempotency_key)
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def current() -> RequestContext | None:
    return _current.get()
