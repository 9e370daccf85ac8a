"""Every PSP call timed and sorted by what came of it, whichever PSP adapter makes it (ops/metrics.py exports it).

The outcome is the gateway's own classification (payments/psp/gateway.py): a result's status, ``not_found`` for a
lookup the PSP had nothing for, or the class of error. A latency line per outcome matters because the slow calls are
usually the failing ones (a timeout is the slowest answer of all).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from django.conf import settings

from ops.metrics import psp_call_seconds
from payments.psp.gateway import PspConfigurationError, TransientPspError, UnknownPspOutcome

P = ParamSpec("P")
R = TypeVar("R")


def observed(operation: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    def decorate(method: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(method)
        def timed(*args: P.args, **kwargs: P.kwargs) -> R:
            started = time.perf_counter()
            outcome = "error"  # anything the gateway did not classify: a bug, and counted as such
            try:
                result = method(*args, **kwargs)
                outcome = _outcome(result)
                return result
            except TransientPspError:
                outcome = "transient"
                raise
            except UnknownPspOutcome:
                outcome = "unknown"
                raise
            except PspConfigurationError:
                outcome = "configuration"
                raise
            finally:
                psp_call_seconds.labels(settings.PAYMENT_PSP, operation, outcome).observe(time.perf_counter() - started)

        return timed

    return decorate


def _outcome(result: object) -> str:
    if result is None:
        return "not_found"
    status = getattr(result, "status", None)
    return str(status) if status is not None else "ok"
