"""Log records as one JSON object per line (production) or a plain line (``make run``), each with its context.

``ContextFilter`` copies the request id and the payment ids of ops/context.py onto every record, without overwriting
what a caller passed in ``extra``. ``JsonFormatter`` writes the message, the context and every ``extra`` field; the
masking filter (api/logfilters.py) runs on the same handlers, after this one, so whatever a line holds has been
through it. Standard library only: a log line is written on every request, and the formatter is short enough to read.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from api.masking import mask_sensitive
from ops import context

# Attributes every LogRecord has; anything else on a record came from ``extra`` or a filter.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in context.current().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {key: value for key, value in record.__dict__.items() if key not in _STANDARD and not key.startswith("_")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        entry.update(extra_fields(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=_as_text, ensure_ascii=False)


def _as_text(value: object) -> str:
    """An extra value JSON cannot hold (a Decimal, Django's request) is written as its text, never the reason a line
    is lost; masked here, since the masking filter saw the object, not this text (a request's text is its path)."""
    return mask_sensitive(str(value))


class PlainFormatter(logging.Formatter):
    """``time level logger message [request_id=… payment_order_id=…]``: for a person reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(f"{name}={getattr(record, name)}" for name in context.FIELDS if hasattr(record, name))
        if not fields:
            return line
        head, newline, rest = line.partition("\n")  # after the message, before a traceback
        return f"{head} [{fields}]{newline}{rest}"
