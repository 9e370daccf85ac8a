"""API throttles, counted in Redis so every web process shares them (DESIGN.md "Security": per client, buyer,
payment method and IP).

Fixed windows: one counter per dimension and window, created with its expiry and incremented in one round trip,
whatever the number of dimensions (a pipeline, or for the card-testing counters one script with one reply; the
high-limit client and address counters only every few requests, see SYNC_EVERY). A window's first refusal is recorded
as a security event;
the refusals after it are only counted, so a flood stays cheap (it is recorded when the 429 is answered, after the
request's transaction has rolled back). If Redis does not answer, requests are not throttled
(logged): refusing every payment while Redis restarts would stop the business, and the risk check's velocity rules
and the PSP's own fraud screening still stand behind it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from django.http import HttpRequest

from api.errors import ApiError
from api.events import security_event_at
from audit.models import SecurityEvent
from ops.redis_client import key_prefix, redis_client

logger = logging.getLogger(__name__)


class Throttled(ApiError):
    status_code = 429
    default_code = "rate_limited"

    def __init__(self, dimension: str, retry_after: int, *, first_refusals: list[str], actor: str) -> None:
        super().__init__(f"Too many requests for this {dimension.replace('_', ' ')}; retry after {retry_after} s.")
        self.retry_after_seconds = retry_after
        self.first_refusals = first_refusals
        self.actor = actor

    def after_refusal(self, request: Any) -> None:
        # A window's first refusal only: the refusals after it are a flood, counted in metrics and nowhere else.
        for detail in self.first_refusals:
            security_event_at(request, SecurityEvent.Kind.THROTTLED, actor=self.actor, detail=detail)


def _counter(dimension: str, value: str, window: int) -> str:
    # Hashed: a payment method token or a buyer id does not belong in Redis's key space as typed.
    digest = hashlib.sha256(value.encode()).hexdigest()[:24]
    return f"{key_prefix()}:throttle:{dimension}:{digest}:{window}"


# The client and address throttles run on every request with limits in the thousands: their counts are added to
# Redis in batches, every SYNC_EVERY requests or SYNC_SECONDS per counter and process, and at once whenever the
# batch would take the count past the limit. A client can so pass its limit by at most that much per web process;
# in exchange most requests make no round trip for it. Low limits (the card-testing ones) are counted exactly.
SYNC_EVERY = 16
SYNC_SECONDS = 0.25


@dataclass
class _Tally:
    pending: int = 0  # requests counted here and not yet in Redis
    total: int = 0  # Redis's count at the last sync
    synced_at: float = float("-inf")


_tallies: dict[str, _Tally] = {}
_tally_window = -1
_tally_lock = threading.Lock()


def forget_local_counts() -> None:
    global _tally_window
    with _tally_lock:
        _tallies.clear()
        _tally_window = -1


def _due(keys: dict[str, str], window: int, limits: dict[str, int]) -> dict[str, int]:
    """Count one request locally per batched counter; return the counts to add to Redis now (name → requests)."""
    global _tally_window
    now = time.monotonic()
    due = {}
    with _tally_lock:
        if window != _tally_window:  # a new window: the old counts mean nothing now
            _tallies.clear()
            _tally_window = window
        for name, key in keys.items():
            tally = _tallies.setdefault(key, _Tally())
            tally.pending += 1
            if (
                tally.pending >= SYNC_EVERY
                or now - tally.synced_at >= SYNC_SECONDS
                or tally.total + tally.pending > limits[name]
            ):
                due[name] = tally.pending
                tally.pending = 0
    return due


def _synced(keys: dict[str, str], sent: dict[str, int], counts: dict[str, int] | None) -> None:
    now = time.monotonic()
    with _tally_lock:
        for name, count in sent.items():
            tally = _tallies.get(keys[name])
            if tally is None:
                continue
            if counts is None:  # not delivered: keep them for the next sync
                tally.pending += count
            else:
                tally.total, tally.synced_at = counts[name], now


def throttle(request: HttpRequest, dimensions: dict[str, str], *, actor: str = "", batched: bool = False) -> None:
    """Count this request against each dimension's limit (e.g. {"client": "7", "ip": "10.0.0.1"}) and raise
    Throttled if one is over. Empty values are not counted. ``batched``: high-limit counters, added to Redis in
    batches (above)."""
    counted = _counted(dimensions)
    if not counted:
        return
    window = _window()
    keys = {name: _counter(name, value, window) for name, value in counted.items()}
    sent = _due(keys, window, settings.API_THROTTLE_LIMITS) if batched else dict.fromkeys(keys, 1)
    if not sent:
        return
    try:
        pipe = redis_client().pipeline(transaction=False)
        for name, count in sent.items():
            pipe.set(keys[name], 0, ex=settings.API_THROTTLE_WINDOW_SECONDS, nx=True)
            pipe.incrby(keys[name], count)
        replies = pipe.execute()
    except redis.RedisError:
        logger.warning("API throttles not checked: Redis unavailable", exc_info=True)
        if batched:
            _synced(keys, sent, None)
        return
    counts = {name: int(replies[index * 2 + 1]) for index, name in enumerate(sent)}
    if batched:
        _synced(keys, sent, counts)
    _refuse_if_over(window, sent, counts, actor)


@contextmanager
def throttle_around(
    request: HttpRequest, dimensions: dict[str, str], *, actor: str = ""
) -> Iterator[Callable[[], None]]:
    """``throttle`` (exact counters) for what the block creates: the counts are sent to Redis as the block starts
    and their answers read when it ends, so Redis's round trip overlaps the block's own work instead of adding a
    wait to the request. The counts stand only when the block completes, and Throttled is raised then if one is
    over. A block that raises takes its counts back: a retry that turns out to be a replay, or a refused request, is
    not counted. For the moment between the two, a concurrent request of the same buyer sees one more attempt than
    there was.

    The block is given ``settle``: a block whose write commits by itself calls it just before that write, so that a
    refusal comes before anything is stored (the counts then stand, as a refusal's do). What the block raises after
    it still takes the counts back."""
    counted = _counted(dimensions)
    if not counted:
        yield _settled_already
        return
    window = _window()
    keys = {name: _counter(name, value, window) for name, value in counted.items()}
    sent = _send(keys)
    settled, refused = False, False
    counts: dict[str, int] | None = None  # Redis's answer, once settled (None if it did not answer)

    def settle() -> None:
        nonlocal settled, refused, counts
        if settled or sent is None:
            return
        settled = True  # before reading: whatever interrupts the read has dropped the connection, not to be read again
        counts = _receive(sent, keys)
        if counts is not None:
            try:
                _refuse_if_over(window, dict.fromkeys(keys, 1), counts, actor)
            except Throttled:
                refused = True  # a refusal's counts stand
                raise

    try:
        yield settle
    except BaseException:
        if sent is not None and not refused:
            if not settled:
                _take_back(sent, keys)
            elif counts is not None:
                _decrement(keys)
        raise
    settle()


def _settled_already() -> None:
    return None


def _counted(dimensions: dict[str, str]) -> dict[str, str]:
    limits = settings.API_THROTTLE_LIMITS
    return {name: value for name, value in dimensions.items() if value and limits.get(name)}


def _window() -> int:
    return int(time.time()) // settings.API_THROTTLE_WINDOW_SECONDS


def _refuse_if_over(window: int, sent: dict[str, int], counts: dict[str, int], actor: str) -> None:
    limits, seconds = settings.API_THROTTLE_LIMITS, settings.API_THROTTLE_WINDOW_SECONDS
    over = [name for name, count in counts.items() if count > limits[name]]
    if not over:
        return
    retry_after = max(1, (window + 1) * seconds - int(time.time()))
    # The window's first refusal: this batch took the count past the limit.
    first_refusals = [
        f"{name} over {limits[name]} requests per {seconds} s"
        for name in over
        if counts[name] - sent[name] <= limits[name]
    ]
    raise Throttled(over[0], retry_after, first_refusals=first_refusals, actor=actor)


# throttle_around's three steps, on one connection taken from the pool for the block's duration and given back after.
# Whatever interrupts sending or reading drops the connection (its replies may be half read); a Redis failure then
# lets the request through, as throttle() does, and anything else (a signal ending the request) goes on up.


def _send(keys: dict[str, str]) -> Any:
    pool = redis_client().connection_pool
    connection = None
    try:
        connection = pool.get_connection()
        connection.send_packed_command([_count_commands(keys.values(), settings.API_THROTTLE_WINDOW_SECONDS)])
    except BaseException as exc:
        _drop(pool, connection)
        if isinstance(exc, redis.RedisError):
            logger.warning("API throttles not checked: Redis unavailable", exc_info=True)
            return None
        raise
    return pool, connection


# Each key: created at 0 with the window's expiry if it is new, then counted. One script, so the counts come back as
# one reply however many dimensions there are (reading a reply is most of what the round trip costs the web process).
_COUNT = (
    "local counts = {} for i, key in ipairs(KEYS) do redis.call('SET', key, 0, 'EX', ARGV[1], 'NX')"
    " counts[i] = redis.call('INCRBY', key, 1) end return counts"
)


def _count_commands(keys: Iterable[str], seconds: int) -> bytes:
    """``EVAL _COUNT`` over ``keys``, in Redis's wire format (RESP). Written out here because redis-py's general
    packer cost more than the round trip it is meant to hide."""
    names = [key.encode() for key in keys]
    command = [b"EVAL", _COUNT.encode(), str(len(names)).encode(), *names, str(seconds).encode()]
    return b"*%d\r\n" % len(command) + b"".join(b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in command)


def _receive(sent: Any, keys: dict[str, str]) -> dict[str, int] | None:
    pool, connection = sent
    try:
        counts = connection.read_response()
    except BaseException as exc:
        # Whatever stopped the reading (Redis, or a signal ending the request) left replies unread on the connection.
        _drop(pool, connection)
        if isinstance(exc, redis.RedisError):
            logger.warning("API throttles not checked: Redis unavailable", exc_info=True)
            return None
        raise
    pool.release(connection)
    return dict(zip(keys, counts, strict=True))


# A counter that expired meanwhile is left alone: DECR would create it at -1, with no expiry.
_TAKE_BACK = "for _, key in ipairs(KEYS) do if redis.call('EXISTS', key) == 1 then redis.call('DECR', key) end end"


def _take_back(sent: Any, keys: dict[str, str]) -> None:
    if _receive(sent, keys) is None:
        return
    _decrement(keys)


def _decrement(keys: dict[str, str]) -> None:
    try:
        redis_client().register_script(_TAKE_BACK)(keys=list(keys.values()))
    except redis.RedisError:
        logger.warning("API throttle counts not taken back: Redis unavailable", exc_info=True)


def _drop(pool: Any, connection: Any) -> None:
    if connection is not None:
        connection.disconnect()
        pool.release(connection)
