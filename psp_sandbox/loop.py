"""The sandbox's background loop: delivers webhooks and runs the clock (psp_sandbox/clock.py).

It runs inside the sandbox's own processes, with no extra command: psp_sandbox/wsgi.py starts one daemon thread in
every gunicorn worker (the project's processes and pytest never import that module). Several workers polling side by
side is safe: deliveries are claimed with SKIP LOCKED and the clock's changes lock their rows and re-check their state.
``manage.py sandbox_deliver`` runs the same loop in the foreground.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from django.db import close_old_connections, connection

from psp_sandbox import clock, config, webhooks

logger = logging.getLogger(__name__)

# Rounds start at most this often while deliveries keep coming, so that those committed meanwhile share a batch.
POLL_SECONDS = 0.05
# With nothing queued by this process, look for due rows this often (rows other processes queued, retries whose time
# has come). A delivery this process queues wakes the loop at once (webhooks.queued).
IDLE_POLL_SECONDS = 0.25
CLOCK_SECONDS = 0.25
ERROR_PAUSE_SECONDS = 1.0
# How often the loop's connection is checked against CONN_MAX_AGE and for errors (close_old_connections), which
# also makes its next query a health check: not on every round.
CONNECTION_CHECK_SECONDS = 5.0

_started_in: int | None = None
_start_lock = threading.Lock()


def run_once() -> int:
    """One round: the clock, then every due delivery (batch after batch). Returns the deliveries attempted."""
    clock.tick()
    attempted = 0
    while True:
        done = webhooks.deliver_due(config.current())
        attempted += done
        if done < webhooks.BATCH_SIZE:
            return attempted


def run_forever(stop: threading.Event | None = None) -> None:
    stop = stop or threading.Event()
    next_tick = 0.0
    next_connection_check = 0.0
    while not stop.is_set():
        try:
            started = time.monotonic()
            if started >= next_tick:
                clock.tick()
                next_tick = time.monotonic() + CLOCK_SECONDS
            webhooks.queued.clear()
            # A full batch means more are waiting: go again at once; otherwise wait for a delivery queued here, the
            # clock, or the idle poll, and then for the round's minimum spacing.
            if webhooks.deliver_due(config.current()) < webhooks.BATCH_SIZE:
                idle_until = min(started + IDLE_POLL_SECONDS, next_tick)
                webhooks.queued.wait(max(idle_until - time.monotonic(), 0.0))
                spacing = started + POLL_SECONDS - time.monotonic()
                if spacing > 0:
                    stop.wait(spacing)
        except Exception:
            # The loop must outlive a database restart or a bad row: log, drop the connection, pause, go on.
            logger.exception("sandbox loop failed; retrying")
            connection.close()
            stop.wait(ERROR_PAUSE_SECONDS)
        finally:
            if time.monotonic() >= next_connection_check:
                close_old_connections()
                next_connection_check = time.monotonic() + CONNECTION_CHECK_SECONDS


def ensure_started() -> None:
    """Start the loop's thread in this process unless it runs already (cheap: called on every request too, which
    restarts it in a worker forked from a master that had it, as with ``gunicorn --preload``)."""
    global _started_in
    if _started_in == os.getpid():
        return
    with _start_lock:
        if _started_in == os.getpid():
            return
        _started_in = os.getpid()
        threading.Thread(target=run_forever, name="psp-sandbox-loop", daemon=True).start()
