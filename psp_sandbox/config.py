"""The sandbox's effective configuration: environment defaults (read at start-up) with the one config row's runtime
overrides on top. Every gunicorn worker reads the row, so a change through ``POST /v1/sandbox/config`` reaches all of
them; each process caches what it read for ``SANDBOX_CONFIG_CACHE_SECONDS`` (1 s) so the hot paths (every API call,
every event, every poll of the delivery loop) do not query it each time.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from django.conf import settings
from django.db import transaction

from psp_sandbox import knobs
from psp_sandbox.errors import InvalidRequest
from psp_sandbox.models import SandboxConfig

_lock = threading.Lock()
_cached: tuple[float, knobs.Config] | None = None


def defaults() -> dict[str, Any]:
    # psp_sandbox/settings.py reads the environment once; a process on the project's settings (a test calling a
    # service directly, manage.py sandbox_deliver) reads it here.
    configured = getattr(settings, "SANDBOX_DEFAULTS", None)
    return dict(configured) if configured is not None else knobs.from_environ(os.environ)


def current() -> knobs.Config:
    global _cached
    # Only the sandbox's own processes cache (psp_sandbox/settings.py); any other reads the row each time.
    ttl = float(getattr(settings, "SANDBOX_CONFIG_CACHE_SECONDS", 0.0))
    now = time.monotonic()
    cached = _cached
    if cached is not None and now - cached[0] < ttl:
        return cached[1]
    row = SandboxConfig.objects.filter(pk=1).first()
    config = _effective(row.overrides if row is not None else {})
    with _lock:
        _cached = (now, config)
    return config


def forget() -> None:
    """Drop this process's cached copy (after a change, so that the process that made it sees it at once)."""
    global _cached
    with _lock:
        _cached = None


def overrides() -> dict[str, Any]:
    row = SandboxConfig.objects.filter(pk=1).first()
    return dict(row.overrides) if row is not None else {}


def config_update(*, changes: dict[str, Any], reset: bool = False) -> knobs.Config:
    """Apply runtime overrides: each value is validated (a 400 naming the knob); ``None`` removes a knob's override
    (back to its environment default); ``reset`` removes them all first. Runs in the caller's transaction."""
    validated = {name: None if value is None else knobs.validate(name, value) for name, value in changes.items()}
    with transaction.atomic():
        row, _ = SandboxConfig.objects.select_for_update().get_or_create(pk=1)
        merged = {} if reset else dict(row.overrides)
        for name, value in validated.items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = value
        row.overrides = merged
        row.save(update_fields=["overrides", "updated"])
    forget()
    return _effective(merged)


def _effective(overrides: dict[str, Any]) -> knobs.Config:
    values = defaults()
    for name, value in overrides.items():
        if name in knobs.BY_NAME:
            try:
                values[name] = knobs.validate(name, value)
            except InvalidRequest:
                continue  # a row written by an older version: its default wins rather than a crash on every call
    return knobs.Config(**values)
