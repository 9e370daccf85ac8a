"""The sandbox's tunable behaviour in one table: where webhooks go, how they are retried, how long a processing payment
takes, and every fault it can inject.

Each knob has a name (its key in ``GET/POST /v1/sandbox/config``), an environment variable that gives its default when
the sandbox starts, a kind that validates it, and a built-in default. The environment is read once
(``psp_sandbox/settings.py``); the config row (``psp_sandbox/config.py``) holds runtime overrides on top, so that a test
or the chaos run can change the sandbox's behaviour without restarting it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlsplit

from psp_sandbox.errors import InvalidRequest


class Kind(enum.Enum):
    RATE = "rate"  # a probability, 0 to 1
    SECONDS = "seconds"  # a duration, 0 or more, fractions allowed
    COUNT = "count"  # a whole number, 0 or more
    URL = "url"  # an http(s) URL, or empty for none
    TEXT = "text"


@dataclass(frozen=True)
class Knob:
    name: str
    env: str
    kind: Kind
    default: Any
    maximum: float | None = None
    help: str = ""


KNOBS: tuple[Knob, ...] = (
    Knob("webhook_url", "SANDBOX_WEBHOOK_URL", Kind.URL, "", help="where events are POSTed; empty: nowhere"),
    Knob("webhook_retry_base_seconds", "SANDBOX_WEBHOOK_RETRY_BASE_SECONDS", Kind.SECONDS, 1.0, 3600),
    Knob("webhook_retry_cap_seconds", "SANDBOX_WEBHOOK_RETRY_CAP_SECONDS", Kind.SECONDS, 60.0, 86400),
    Knob("webhook_max_attempts", "SANDBOX_WEBHOOK_MAX_ATTEMPTS", Kind.COUNT, 10, 1000),
    Knob("processing_delay_seconds", "SANDBOX_PROCESSING_DELAY_SECONDS", Kind.SECONDS, 2.0, 86400),
    Knob("fault_seed", "SANDBOX_FAULT_SEED", Kind.TEXT, "0"),
    Knob("latency_ms", "SANDBOX_LATENCY_MS", Kind.COUNT, 0, 60_000),
    Knob("fault_5xx_rate", "SANDBOX_FAULT_5XX_RATE", Kind.RATE, 0.0),
    Knob("fault_429_rate", "SANDBOX_FAULT_429_RATE", Kind.RATE, 0.0),
    Knob("fault_reset_rate", "SANDBOX_FAULT_RESET_RATE", Kind.RATE, 0.0),
    Knob("fault_timeout_rate", "SANDBOX_FAULT_TIMEOUT_RATE", Kind.RATE, 0.0),
    Knob("fault_timeout_seconds", "SANDBOX_FAULT_TIMEOUT_SECONDS", Kind.SECONDS, 15.0, 600),
    Knob("fault_lost_response_rate", "SANDBOX_FAULT_LOST_RESPONSE_RATE", Kind.RATE, 0.0),
    Knob("webhook_drop_rate", "SANDBOX_WEBHOOK_DROP_RATE", Kind.RATE, 0.0),
    Knob("webhook_duplicate_rate", "SANDBOX_WEBHOOK_DUPLICATE_RATE", Kind.RATE, 0.0),
    Knob("webhook_delay_ms", "SANDBOX_WEBHOOK_DELAY_MS", Kind.COUNT, 0, 3_600_000),
    Knob("webhook_reorder_rate", "SANDBOX_WEBHOOK_REORDER_RATE", Kind.RATE, 0.0),
    Knob("webhook_reorder_hold_ms", "SANDBOX_WEBHOOK_REORDER_HOLD_MS", Kind.COUNT, 1000, 600_000),
    Knob("report_missing_row_rate", "SANDBOX_REPORT_MISSING_ROW_RATE", Kind.RATE, 0.0),
    Knob("report_extra_row_rate", "SANDBOX_REPORT_EXTRA_ROW_RATE", Kind.RATE, 0.0),
    Knob("report_amount_off_rate", "SANDBOX_REPORT_AMOUNT_OFF_RATE", Kind.RATE, 0.0),
    Knob("report_next_day_rate", "SANDBOX_REPORT_NEXT_DAY_RATE", Kind.RATE, 0.0),
)
BY_NAME = {knob.name: knob for knob in KNOBS}


@dataclass(frozen=True)
class Config:
    """The sandbox's effective configuration: environment defaults with the config row's overrides on top."""

    webhook_url: str
    webhook_retry_base_seconds: float
    webhook_retry_cap_seconds: float
    webhook_max_attempts: int
    processing_delay_seconds: float
    fault_seed: str
    latency_ms: int
    fault_5xx_rate: float
    fault_429_rate: float
    fault_reset_rate: float
    fault_timeout_rate: float
    fault_timeout_seconds: float
    fault_lost_response_rate: float
    webhook_drop_rate: float
    webhook_duplicate_rate: float
    webhook_delay_ms: int
    webhook_reorder_rate: float
    webhook_reorder_hold_ms: int
    report_missing_row_rate: float
    report_extra_row_rate: float
    report_amount_off_rate: float
    report_next_day_rate: float

    def as_dict(self) -> dict[str, Any]:
        return {field.name: getattr(self, field.name) for field in fields(self)}

    @property
    def api_faults_on(self) -> bool:
        return any(
            rate > 0
            for rate in (
                self.fault_5xx_rate,
                self.fault_429_rate,
                self.fault_reset_rate,
                self.fault_timeout_rate,
                self.fault_lost_response_rate,
            )
        )


assert {field.name for field in fields(Config)} == set(BY_NAME), "every knob is a Config field and back"


def from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    """Every knob's start-up value: its environment variable when set, else its built-in default. A bad value stops
    the sandbox at start-up with the variable's name."""
    from django.core.exceptions import ImproperlyConfigured

    values: dict[str, Any] = {}
    for knob in KNOBS:
        raw = environ.get(knob.env)
        if raw is None or raw.strip() == "":
            values[knob.name] = knob.default
            continue
        try:
            values[knob.name] = validate(knob.name, raw.strip())
        except InvalidRequest as exc:
            raise ImproperlyConfigured(f"{knob.env}: {exc.message}") from exc
    return values


def validate(name: str, value: Any) -> Any:
    """One knob's value, from JSON (numbers, strings) or a form (strings), checked and converted; a 400 naming it."""
    knob = BY_NAME.get(name)
    if knob is None:
        raise InvalidRequest(f"Received unknown parameter: {name}", code="parameter_unknown", param=name)
    if knob.kind is Kind.TEXT:
        if not isinstance(value, str | int) or isinstance(value, bool) or len(str(value)) > 200:
            raise InvalidRequest(f"Invalid {name}: a string of at most 200 characters.", param=name)
        return str(value)
    if knob.kind is Kind.URL:
        if not isinstance(value, str):
            raise InvalidRequest(f"Invalid {name}: a URL string, or empty for none.", param=name)
        parts = urlsplit(value)
        if value and (parts.scheme not in ("http", "https") or not parts.netloc):
            raise InvalidRequest(f"Invalid {name}: {value!r} is not an http(s) URL.", param=name)
        return value
    number = _number(name, value)
    if knob.kind is Kind.RATE:
        if not 0 <= number <= 1:
            raise InvalidRequest(f"Invalid {name}: a rate between 0 and 1, got {value}.", param=name)
        return float(number)
    if number < 0 or (knob.maximum is not None and number > knob.maximum):
        raise InvalidRequest(f"Invalid {name}: between 0 and {knob.maximum:g}, got {value}.", param=name)
    if knob.kind is Kind.COUNT:
        if number != int(number):
            raise InvalidRequest(f"Invalid {name}: a whole number, got {value}.", param=name)
        return int(number)
    return float(number)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise InvalidRequest(f"Invalid {name}: a number, got {value}.", param=name)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if number == number and abs(number) != float("inf"):
            return number
    raise InvalidRequest(f"Invalid {name}: a number, got {value!r}.", param=name)
