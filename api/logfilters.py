"""Log masking: a card number or a secret that reaches a log line (typed into a URL, quoted in an exception, passed
in ``extra``) is masked before any handler writes it. settings.LOGGING puts the filter on every handler, and
gunicorn's logger class below puts it on gunicorn's."""

from __future__ import annotations

import logging
from typing import Any

from gunicorn.glogging import Logger as GunicornLogger

from api.masking import mask_sensitive
from config.env import env_str
from ops import context
from ops.logs import ContextFilter, JsonFormatter, PlainFormatter, extra_fields


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask_sensitive(value)
    if isinstance(value, list | tuple):
        return [_masked(item) for item in value]
    if isinstance(value, dict):
        return {key: _masked(item) for key, item in value.items()}
    return value


class SensitiveDataFilter(logging.Filter):
    """Masks the message, the traceback and every ``extra`` field of a record, whatever the formatter then does."""

    _traceback = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_sensitive(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            # Formatters reuse exc_text when it is set: rendered and masked here, the traceback is written masked.
            record.exc_text = self._traceback.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_sensitive(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_sensitive(record.stack_info)
        for key, value in extra_fields(record).items():
            setattr(record, key, _masked(value))
        return True


class MaskingGunicornLogger(GunicornLogger):
    """gunicorn's logger (access and error logs): the masking and context filters on every handler, the project's
    formatter (LOG_FORMAT), and each access line with the request id the response carries. gunicorn's master loads
    this before Django's settings, so LOG_FORMAT is read from the environment here."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        json_lines = env_str("LOG_FORMAT", "json") == "json"
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.addFilter(ContextFilter())
                handler.addFilter(SensitiveDataFilter())
                handler.setFormatter(JsonFormatter() if json_lines else PlainFormatter())

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        # The access line is written after the response, outside the request's context: the id comes from the
        # header that ops/middleware.py set on the response.
        request_id = next((value for name, value in resp.headers if name.lower() == "x-request-id"), None)
        with context.bound(request_id=request_id):
            super().access(resp, req, environ, request_time)
