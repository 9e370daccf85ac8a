"""What every log line says about where it comes from: the request id, and the payment it is about.

One ContextVar holds an immutable mapping, so binding is one dict copy and code running for another request (another
gunicorn thread, another Celery task) never sees it. Set by ops/middleware.py for a web request, by ops/signals.py for
a Celery task (from the headers its publisher added), by the execution relay from PostgreSQL's notification, and by
services for the ids they learn (``payment_id`` once the order is loaded). ops/logs.py copies it onto every record.

Nothing here imports Django: gunicorn's master and Celery's signal handlers use it before settings are loaded.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from types import MappingProxyType

# The fields a log line may carry from the context, in the order a plain log line shows them.
FIELDS = ("request_id", "payment_id", "payment_order_id", "refund_id", "payout_id", "celery_task", "celery_task_id")

_EMPTY: Mapping[str, str] = MappingProxyType({})
_context: ContextVar[Mapping[str, str]] = ContextVar("marketpay_log_context", default=_EMPTY)

# A request id we are given is kept when it is short and plain: it goes into response headers, log lines, Celery
# headers and PostgreSQL notifications (where a space separates it from the order id), so no spaces, quotes or
# control characters. The card-number check is the caller's (api.carddata), which we must not import here.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def new_request_id() -> str:
    """24 characters of base32: letters and the digits 2-7 only. A hex or decimal id would sometimes hold a
    Luhn-valid run of 13 digits, which the log filter masks as a card number, and the id would be lost."""
    return base64.b32encode(os.urandom(15)).decode("ascii").lower()


def sane_request_id(value: str | None) -> bool:
    return bool(value) and _SANE_REQUEST_ID.fullmatch(value or "") is not None


def current() -> Mapping[str, str]:
    return _context.get()


def bind(**fields: str | None) -> Token[Mapping[str, str]]:
    """Add ``fields`` (empty ones are skipped) to the context; ``reset`` with the token undoes it."""
    merged = {**_context.get(), **{name: value for name, value in fields.items() if value}}
    return _context.set(MappingProxyType(merged))


def reset(token: Token[Mapping[str, str]]) -> None:
    _context.reset(token)


def clear() -> None:
    _context.set(_EMPTY)


@contextmanager
def bound(**fields: str | None) -> Iterator[None]:
    token = bind(**fields)
    try:
        yield
    finally:
        reset(token)
