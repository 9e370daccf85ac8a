"""Throughput of POST /v1/payments against a minimal Django INSERT endpoint, measured in the same run.

What is measured
    Three endpoints, served by the same gunicorn (2 sync workers, persistent database connections, no access log,
    DEBUG off) from the same PostgreSQL database:

    - ``ceiling``: ``POST /bench/ceiling`` (``bench/views.py``), a plain Django view that parses a tiny JSON body,
      checks it and INSERTs one row. It is the ceiling: what Django and PostgreSQL do for the smallest useful write
      on this machine, through the same middleware and WSGI server. The target ratio is measured against it.
    - ``ceiling-drf``: ``POST /bench/ceiling-drf``, the same write as a DRF view (a serializer validates the body,
      the ORM inserts the row, no authentication). For context: the ratio against it is what the API's own work
      costs beyond the framework both use.
    - ``payments``: ``POST /v1/payments`` with a bearer key, a fresh Idempotency-Key and two orders with fresh
      payment_order_ids per request: the real work of the storefront API (DRF, authentication, idempotency record,
      validation, payment, sellers and orders).

    Both are driven by a load generator in this process (a selector loop over non-blocking sockets):
    ``--concurrency`` requests in flight, one TCP connection per request (``Connection: close``; sync workers close
    after each response anyway). Each endpoint gets ``--seconds`` of load, cut into ``--slices`` slices that
    alternate between the endpoints, so that noise on the machine (another process, a checkpoint, the CPU's clock)
    hits both alike. A short warm-up per endpoint runs first and is not counted.

How to read it
    ``req/s`` counts only the expected answers (201) over the time the endpoint was under load. ``p50``/``p99`` are
    the latencies of those answers as the client saw them, connection set-up included; at a fixed concurrency they
    mostly restate the throughput (latency ~ concurrency / req/s). ``errors`` counts everything else (another
    status, a refused or reset connection, a timeout): any error makes the run INVALID, and the process exits 1.
    The figure that matters is the ratio payments ÷ ceiling; the target is at least 0.5. Absolute numbers depend on
    the machine and say little on their own; the per-slice figures show how steady the machine was. The load
    generator's own CPU use is printed too: it shares the machine with the server, so it should stay small.
    "CPU ms per answer" is what each endpoint's answers cost on the server side, from /proc (user + system time):
    gunicorn's processes, every PostgreSQL process and Redis, over that endpoint's slices. It moves less with the
    machine's speed than req/s does, and shows where a difference in throughput comes from.

Database
    The run never touches the developer's database: it uses ``<name>_bench`` for the ``<name>`` in DATABASE_URL,
    dropped and created afresh at the start of every run, then migrated (with ``bench.settings``, which adds the
    ceiling's table). It is left in place at the end so that the rows can be inspected; the next run replaces it.

Needs DATABASE_URL, REDIS_URL and SECRET_KEY in the environment (``make bench-api`` provides them).
"""

from __future__ import annotations

import argparse
import errno
import itertools
import json
import math
import os
import secrets
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's folder comes first on sys.path: the project's root makes ``bench.harness`` importable.
if str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))

from bench.harness import (  # noqa: E402
    BenchError,
    bench_database_urls,
    bench_ready,
    positive,
    queue_suffix,
    queues_delete,
    recreate_database,
)

HOST = "127.0.0.1"
WORKERS = 2
TARGET_RATIO = 0.5
EXPECTED_STATUS = 201
# Far above any sane latency: only a hung server reaches it, and then it counts as an error instead of blocking.
REQUEST_TIMEOUT = 60.0
STARTUP_TIMEOUT = 60.0
SAMPLES_KEPT = 2
# The executor tasks each payment queues go to this run's own queues, deleted at the end (no worker runs here).
QUEUE_SUFFIX = queue_suffix()


# --- Set-up -----------------------------------------------------------------------------------------------------------


def child_env(bench_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["DATABASE_URL"] = bench_url
    env["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    # Persistent connections, as in production: without them every request would pay a PostgreSQL connection.
    env["DB_CONN_MAX_AGE"] = "600"
    env["LOG_LEVEL"] = "WARNING"
    env["CELERY_QUEUE_SUFFIX"] = QUEUE_SUFFIX
    env.pop("DEBUG", None)
    # Only the options given on the command line apply.
    env.pop("GUNICORN_CMD_ARGS", None)
    return env


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, check=False
    )
    if result.returncode != 0:
        raise BenchError(f"manage.py {args[0]} failed with exit code {result.returncode}")
    return result.stdout


def create_api_key(env: dict[str, str]) -> str:
    code = "from api.services import api_client_create; print(api_client_create(name='bench').key)"
    lines = [line.strip() for line in manage(env, "shell", "-c", code).splitlines() if line.strip()]
    if not lines:
        raise BenchError("creating the API client printed no key")
    return lines[-1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@contextmanager
def gunicorn(env: dict[str, str], port: int, *, threads: int = 1) -> Iterator[subprocess.Popen[bytes]]:
    """A running gunicorn that answers on ``port``; stopped however the block is left. ``threads`` above one makes
    its workers gthread ones."""
    worker_class = (
        ["--worker-class", "sync"] if threads == 1 else ["--worker-class", "gthread", "--threads", str(threads)]
    )
    cmd = [
        sys.executable, "-m", "gunicorn", "config.wsgi:application",
        "--workers", str(WORKERS), *worker_class, "--bind", f"{HOST}:{port}",
        "--log-level", "warning",
    ]  # fmt: skip
    # Its own session: a Ctrl-C reaches this process only, which then stops gunicorn in order (and can kill the
    # whole group, workers included, if the master does not go).
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
    try:
        wait_until_up(proc, port)
        yield proc
    finally:
        stop(proc)


def wait_until_up(proc: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    # A valid write (one ceiling row): any answer of 400 or more would be logged by Django as a warning.
    probe = _http_post(port, "/bench/ceiling", b'{"name":"probe","amount":"0"}')
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"gunicorn exited with code {proc.returncode} before answering")
        try:
            with socket.create_connection((HOST, port), timeout=2) as sock:
                sock.sendall(probe)
                if sock.recv(16).startswith(b"HTTP/1."):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise BenchError(f"gunicorn did not answer within {STARTUP_TIMEOUT:.0f} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
    # The group goes too: a worker whose master was killed must not keep running.
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


# --- Requests ---------------------------------------------------------------------------------------------------------


def _http_post(port: int, path: str, body: bytes, headers: str = "") -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n{headers}\r\n"
    )
    return head.encode() + body


@dataclass
class Endpoint:
    name: str
    build: Callable[[], bytes]  # one complete HTTP request, fresh ids included


def ceiling_body(n: int) -> dict[str, str]:
    return {"name": f"row_{n}", "amount": "12.34"}


def payment_body(run: str, n: int) -> dict[str, Any]:
    """The shape of tests/conftest.py payment_body(): two orders for two sellers, ids unique to ``run`` and ``n``."""
    return {
        "checkout_id": f"chk_{run}_{n}",
        "buyer_info": {"id": "buyer_42", "email": "ann@example.com", "country": "DE"},
        "payment_method": {"token": "pm_card_visa"},
        "payment_orders": [
            {"payment_order_id": f"po_{run}_{n}_1", "seller_account": "seller_7", "amount": "19.99", "currency": "EUR"},
            {"payment_order_id": f"po_{run}_{n}_2", "seller_account": "seller_9", "amount": "5.00", "currency": "EUR"},
        ],
    }  # fmt: skip


def endpoints(port: int, api_key: str) -> list[Endpoint]:
    # A random run id keeps every id globally unique, not only within this run.
    run = secrets.token_hex(6)
    numbers = itertools.count(1)

    def ceiling() -> bytes:
        body = json.dumps(ceiling_body(next(numbers)), separators=(",", ":"))
        return _http_post(port, "/bench/ceiling", body.encode())

    def ceiling_drf() -> bytes:
        body = json.dumps(ceiling_body(next(numbers)), separators=(",", ":"))
        return _http_post(port, "/bench/ceiling-drf", body.encode())

    def payments() -> bytes:
        n = next(numbers)
        headers = f"Authorization: Bearer {api_key}\r\nIdempotency-Key: bench_{run}_{n}\r\n"
        body = json.dumps(payment_body(run, n), separators=(",", ":"))
        return _http_post(port, "/v1/payments", body.encode(), headers)

    return [Endpoint("ceiling", ceiling), Endpoint("ceiling-drf", ceiling_drf), Endpoint("payments", payments)]


# --- Load -------------------------------------------------------------------------------------------------------------


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)  # seconds, expected answers only
    statuses: Counter[int] = field(default_factory=Counter)  # every answer, the expected ones included
    failures: Counter[str] = field(default_factory=Counter)  # no answer: the exception's name
    samples: list[str] = field(default_factory=list)  # the first unexpected answers, for the report
    elapsed: float = 0.0  # seconds under load
    slice_rates: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds under load: web workers, PostgreSQL, Redis

    @property
    def ok(self) -> int:
        return self.statuses[EXPECTED_STATUS]

    @property
    def errors(self) -> int:
        return sum(self.statuses.values()) - self.ok + sum(self.failures.values())

    def percentile_ms(self, fraction: float) -> float:
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)] * 1000


class _Exchange:
    """One request on its own non-blocking connection, from connect to the server's close."""

    __slots__ = ("chunks", "pending", "sock", "started")

    def __init__(self, request: bytes) -> None:
        self.started = time.perf_counter()  # before connect: the latency includes connection set-up
        self.pending = memoryview(request)
        self.chunks: list[bytes] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)


def load(endpoint: Endpoint, port: int, concurrency: int, seconds: float, tally: Tally) -> None:
    """Keep ``concurrency`` requests in flight, each replaced by a new one when it ends, until ``seconds`` have passed.

    A plain selector loop rather than asyncio: this process shares the machine's CPUs with the server it measures,
    and asyncio (streams or the loop's socket calls) spent about twice the CPU per request on this work.
    """
    address = (HOST, port)
    selector = selectors.DefaultSelector()
    deadline = time.perf_counter() + seconds
    ok_before = tally.ok
    in_flight: set[_Exchange] = set()

    def start() -> None:
        exchange = _Exchange(endpoint.build())
        error = exchange.sock.connect_ex(address)
        if error not in (0, errno.EINPROGRESS, errno.EAGAIN):
            tally.failures[errno.errorcode.get(error, str(error))] += 1
            exchange.sock.close()
            return
        selector.register(exchange.sock, selectors.EVENT_WRITE, exchange)
        in_flight.add(exchange)

    def fail(exchange: _Exchange, reason: str) -> None:
        tally.failures[reason] += 1
        end(exchange)

    def end(exchange: _Exchange) -> None:
        # Its replacement is started by the loop below, once the events at hand are handled.
        selector.unregister(exchange.sock)
        in_flight.discard(exchange)
        exchange.sock.close()

    def finish(exchange: _Exchange) -> None:
        latency = time.perf_counter() - exchange.started
        response = b"".join(exchange.chunks)
        # Only the status line is parsed: "HTTP/1.1 201 Created".
        try:
            status = int(response.split(b" ", 2)[1])
        except (IndexError, ValueError):
            fail(exchange, "unparsable response")
            return
        tally.statuses[status] += 1
        if status == EXPECTED_STATUS:
            tally.latencies.append(latency)
        elif len(tally.samples) < SAMPLES_KEPT:
            # The status line and the body: the headers say nothing the status does not.
            status_line, _, rest = response.partition(b"\r\n")
            body = rest.partition(b"\r\n\r\n")[2]
            tally.samples.append(f"{status_line.decode(errors='replace')}  {body[:400].decode(errors='replace')}")
        end(exchange)

    started = now = time.perf_counter()
    next_timeout_check = started + 1.0
    while True:
        if now < deadline:
            # Once per round: a connection refused at once must not spin here until the deadline.
            for _ in range(concurrency - len(in_flight)):
                start()
        if not in_flight and now >= deadline:
            break
        for key, _mask in selector.select(timeout=1.0):
            exchange: _Exchange = key.data
            try:
                if exchange.pending:
                    # Writable: connected (or failed to). A small request goes out in one send.
                    error = exchange.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if error:
                        fail(exchange, errno.errorcode.get(error, str(error)))
                        continue
                    exchange.pending = exchange.pending[exchange.sock.send(exchange.pending) :]
                    if not exchange.pending:
                        selector.modify(exchange.sock, selectors.EVENT_READ, exchange)
                    continue
                # Up to the server's close: the latency covers the whole response, not only its first bytes.
                chunk = exchange.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError as exc:
                fail(exchange, type(exc).__name__)
                continue
            if chunk:
                exchange.chunks.append(chunk)
            else:
                finish(exchange)
        now = time.perf_counter()
        if now >= next_timeout_check:
            # Only a hung server gets here: the request counts as an error instead of blocking the run.
            for exchange in [e for e in in_flight if now - e.started > REQUEST_TIMEOUT]:
                fail(exchange, "timeout")
            next_timeout_check = now + 1.0
    selector.close()
    # Until the last answer: the requests still in flight at the deadline are counted, so is their time.
    elapsed = time.perf_counter() - started
    tally.elapsed += elapsed
    tally.slice_rates.append((tally.ok - ok_before) / elapsed)


@dataclass
class Run:
    tallies: dict[str, Tally]  # per endpoint, in the order they are driven
    warmup: Tally  # both endpoints' warm-up answers: not in the figures, but an error there is an error
    load_cpu_share: float  # this process's CPU time over the measured wall time (1.0 = one whole core)


def drive(port: int, api_key: str, *, web: int, concurrency: int, seconds: float, slices: int, warmup: float) -> Run:
    """``web``: gunicorn's process group, whose CPU is counted per endpoint with PostgreSQL's and Redis's."""
    from bench.processes import cpu_by_process, cpu_delta  # here: bench.processes imports this module

    driven = endpoints(port, api_key)
    run = Run({endpoint.name: Tally() for endpoint in driven}, Tally(), 0.0)
    # The first requests of each worker import, resolve URLs and open its database connection: not measured.
    for endpoint in driven:
        load(endpoint, port, concurrency, warmup, run.warmup)
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(slices):
        for endpoint in driven:
            tally = run.tallies[endpoint.name]
            before = cpu_by_process({"web": [web]})
            load(endpoint, port, concurrency, seconds / slices, tally)
            for group, spent in cpu_delta(before, cpu_by_process({"web": [web]})).items():
                tally.cpu[group] = tally.cpu.get(group, 0.0) + spent
    run.load_cpu_share = (time.process_time() - cpu) / (time.perf_counter() - wall)
    return run


# --- Report -----------------------------------------------------------------------------------------------------------


def rate(tally: Tally) -> float:
    return tally.ok / tally.elapsed if tally.elapsed else 0.0


def report(run: Run) -> int:
    rows = list(run.tallies.items())
    print(f"\n{'endpoint':<12} {'requests':>9} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for name, tally in rows:
        print(
            f"{name:<12} {tally.ok:>9} {rate(tally):>9.1f} {tally.percentile_ms(0.50):>8.1f} "
            f"{tally.percentile_ms(0.99):>8.1f} {tally.errors:>7}"
        )
    for name, tally in rows:
        print(f"  {name} req/s per slice: {'  '.join(f'{r:.1f}' for r in tally.slice_rates)}")
    print(f"  load generator CPU: {run.load_cpu_share:.0%} of one core")
    # What each answer cost the server side, whatever the machine's speed did to req/s (and to the ceiling alike).
    for name, tally in rows:
        spent = "  ".join(
            f"{group} {1000 * tally.cpu.get(group, 0.0) / tally.ok:.2f}" for group in ("web", "postgres", "redis")
        )
        print(f"  {name} CPU ms per answer: {spent}" if tally.ok else f"  {name}: no answers")

    payments, ceiling, ceiling_drf = (rate(run.tallies[name]) for name in ("payments", "ceiling", "ceiling-drf"))
    ratio = payments / ceiling if ceiling else 0.0
    verdict = "PASS" if ratio >= TARGET_RATIO else "BELOW TARGET"
    print(f"\npayments / ceiling     = {ratio:.2f}   (target >= {TARGET_RATIO:.2f})   {verdict}")
    print(f"payments / ceiling-drf = {payments / ceiling_drf if ceiling_drf else 0.0:.2f}   (for context)")

    errors = sum(tally.errors for _, tally in rows) + run.warmup.errors
    if not errors:
        return 0
    print("\n" + "!" * 78)
    print(f"!!! INVALID RUN: {errors} request(s) did not get {EXPECTED_STATUS}. The figures above do not count.")
    for name, tally in [*rows, ("warm-up", run.warmup)]:
        if tally.errors:
            unexpected = {status: n for status, n in tally.statuses.items() if status != EXPECTED_STATUS}
            print(f"!!! {name}: statuses {unexpected}, no answer {dict(tally.failures)}")
            for sample in tally.samples:
                print(f"!!!   {sample}")
    print("!" * 78)
    return 1


# --- Main -------------------------------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--seconds", type=positive(float), default=20.0, help="load per endpoint (default 20)")
    parser.add_argument("--concurrency", type=positive(int), default=16, help="requests in flight (default 16)")
    parser.add_argument("--slices", type=positive(int), default=4, help="slices per endpoint, alternated (default 4)")
    args = parser.parse_args(argv)
    if not bench_ready("bench-api", ("DATABASE_URL", "SECRET_KEY")):
        return 2
    warmup = min(2.0, max(0.5, args.seconds / 10))
    try:
        bench_url, maintenance_url, db_name = bench_database_urls(os.environ["DATABASE_URL"], "_bench")
        print(f"CPUs: {os.cpu_count()}   python {sys.version.split()[0]}")
        print(f"gunicorn: {WORKERS} sync workers, DB_CONN_MAX_AGE=600, no access log   database: {db_name} (recreated)")
        print(
            f"load: concurrency {args.concurrency}, {args.seconds:g} s per endpoint in {args.slices} alternating "
            f"slices of {args.seconds / args.slices:g} s, warm-up {warmup:g} s per endpoint, Connection: close"
        )
        recreate_database(maintenance_url, db_name)
        env = child_env(bench_url)
        manage(env, "migrate", "--noinput", "-v", "0")
        api_key = create_api_key(env)
        port = free_port()
        with gunicorn(env, port) as server:
            run = drive(
                port,
                api_key,
                web=server.pid,  # its own session: the pid is the process group's id
                concurrency=args.concurrency,
                seconds=args.seconds,
                slices=args.slices,
                warmup=warmup,
            )
    except (BenchError, psycopg.Error) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        queues_delete(QUEUE_SUFFIX)
    return report(run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
