"""What every benchmark script shares: its own database, option parsing, signal handling."""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from urllib.parse import quote, unquote, urlsplit

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent


class BenchError(Exception):
    """A set-up step failed: no figures can be produced."""


def bench_database_urls(url: str, suffix: str) -> tuple[str, str, str]:
    """(URL of the bench database, URL of the server's ``postgres`` database, the bench database's name).

    The bench database is DATABASE_URL's with ``suffix`` added, so a benchmark never touches the developer's data.
    """
    parts = urlsplit(url)
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise BenchError("DATABASE_URL names no database")
    bench = name if name.endswith(suffix) else f"{name}{suffix}"
    return (
        parts._replace(path="/" + quote(bench)).geturl(),
        parts._replace(path="/postgres").geturl(),
        bench,
    )


def recreate_database(maintenance_url: str, name: str) -> None:
    # CREATE/DROP DATABASE cannot run inside a transaction block. FORCE ends sessions a crashed earlier run left open.
    with psycopg.connect(maintenance_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def use_bench_database(bench_url: str) -> None:
    """Point this process, and every process it starts afterwards (they inherit the environment), at the bench
    database, with the settings a production process would have."""
    os.environ["DATABASE_URL"] = bench_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ["LOG_LEVEL"] = "WARNING"
    # DEBUG would make Django keep every query in memory and log it: not what production runs.
    os.environ.pop("DEBUG", None)


def migrate() -> None:
    """Migrate the database DATABASE_URL names (use_bench_database first)."""
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=dict(os.environ), check=False
    )
    if result.returncode != 0:
        raise BenchError(f"manage.py migrate failed with exit code {result.returncode}")


def positive(kind: type[float] | type[int]) -> Callable[[str], float | int]:
    """An argparse type: a number of ``kind`` above zero."""

    def parse(text: str) -> float | int:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def exit_on_signal(signum: int, frame: FrameType | None) -> None:
    # Turns SIGTERM/SIGHUP into SystemExit, so that the scripts' finally blocks stop what they started.
    raise SystemExit(128 + signum)


def bench_ready(target: str, needs: tuple[str, ...]) -> bool:
    """What every bench does first: stop through its finally blocks on SIGTERM/SIGHUP, and check that the
    environment ``make <target>`` sets is there (False, said on stderr, when it is not)."""
    signal.signal(signal.SIGTERM, exit_on_signal)
    signal.signal(signal.SIGHUP, exit_on_signal)
    missing = [name for name in needs if not os.environ.get(name)]
    if missing:
        print(f"bench: {' and '.join(missing)} must be set (make {target} sets them)", file=sys.stderr)
        return False
    return True


def queue_suffix() -> str:
    """CELERY_QUEUE_SUFFIX for one benchmark run: its tasks go to queues of its own, never to a running system's."""
    return f".bench-{secrets.token_hex(4)}"


def queues_delete(suffix: str) -> None:
    """Remove the run's queues (and what they still hold) from the broker."""
    import redis

    broker = os.environ.get("CELERY_BROKER_URL") or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    client = redis.Redis.from_url(broker, socket_connect_timeout=5)
    keys = list(client.scan_iter(match=f"*{suffix}*", count=1000))
    if keys:
        client.delete(*keys)
