"""WSGI entry point of the sandbox PSP: ``gunicorn psp_sandbox.wsgi:application --bind 127.0.0.1:8100``.

Only the sandbox's gunicorn imports this module, so this is where its background loop (webhook delivery and the
clock, psp_sandbox/loop.py) starts: one daemon thread per worker process, at import, and checked again on every
request so that a worker forked from a preloaded master starts its own.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "psp_sandbox.settings")

_django = get_wsgi_application()

from psp_sandbox import faults  # noqa: E402 - needs the apps loaded


def _background() -> None:
    if getattr(settings, "SANDBOX_BACKGROUND", False):
        from psp_sandbox import loop

        loop.ensure_started()


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    _background()
    response = _django(environ, start_response)
    if environ.get(faults.RESET_MARK):
        # The connection-reset and lost-response faults: no answer at all, the connection aborted.
        close = getattr(response, "close", None)
        if close is not None:
            close()
        faults.reset_connection(environ)
    return response


_background()
