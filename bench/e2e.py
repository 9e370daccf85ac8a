"""End to end: payments created at a steady rate, charged at the sandbox PSP, posted to the ledger. Completed per
second and completion latency, beside the API-only creation rate measured in the same run.

What runs
    On this machine, each in its own processes: PostgreSQL and Redis (from the environment), the sandbox PSP
    (gunicorn, 2 workers x 8 threads, delivering its signed webhooks to our endpoint), our web server (gunicorn,
    2 workers x 4 threads, as in the Procfile) and two Celery worker processes (``--pool threads``,
    ``--concurrency`` each, serving every queue). The run's tasks go to queues of its own
    (``CELERY_QUEUE_SUFFIX``), deleted at the end.

Phases
    1. API only (the baseline): ``POST /v1/payments`` in a closed loop at ``--api-concurrency`` for ``--api-seconds``
       with no relay or worker running, so the figure is what the API alone sustains. Those payments are left
       unexecuted (no relay hears them, and they are marked out of the way before phase 2).
    2. End to end: the workers start; payments are created at ``--rate`` per second for ``--seconds``, each with
       ``--orders`` orders paid with ``pm_card_visa``, then the run waits up to ``--drain`` seconds for the last
       ones to finish.

What is measured
    A payment is complete when every order is SUCCESS with its pay-in posting (they commit together). Its completion
    latency is the SUCCESS transition's time (PostgreSQL's clock, the start of its transaction, which commits a few
    milliseconds later) minus the payment's creation time (the web process's clock, just before its INSERT; the
    same machine's clock here).
    "completed/s" counts the payments that completed inside the load window, over the window: a system that keeps up
    completes about as many as are offered. Afterwards the invariants are checked: one pay-in per SUCCESS order, at
    most one successful PSP charge per order, ledger balanced. Target: at least 100 completed payments/s with p99
    completion at most 2 s.

Needs DATABASE_URL, REDIS_URL and SECRET_KEY in the environment (``make bench-e2e`` provides them).
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import math
import os
import secrets
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))

from bench.api import HOST, Endpoint, Tally, child_env, create_api_key, free_port, gunicorn, load, manage, stop  # noqa: E402
from bench.harness import (  # noqa: E402
    BenchError,
    bench_database_urls,
    bench_ready,
    positive,
    queues_delete,
    recreate_database,
)
from bench.processes import (  # noqa: E402
    CHARGED_TWICE,
    celery_worker,
    cpu_by_process,
    cpu_delta,
    machine_busy_seconds,
    manage_process,
    sandbox,
    wait_until_ready,
)

TARGET_COMPLETED_PER_SECOND = 100.0
TARGET_P99_SECONDS = 2.0
QUEUE_SUFFIX = f".bench-e2e-{secrets.token_hex(4)}"
QUEUES = ("default", "payments", "webhooks", "maintenance")


# --- Processes ------------------------------------------------------------------------------------------------------


@contextmanager
def celery_workers(
    env: dict[str, str], count: int, concurrency: int, pool: str
) -> Iterator[list[subprocess.Popen[bytes]]]:
    queues = [f"{queue}{QUEUE_SUFFIX}" for queue in QUEUES]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for n in range(count):
            procs.append(celery_worker(env, f"bench{n}", queues=queues, pool=pool, concurrency=concurrency))
        wait_until_ready(env, procs)
        yield procs
    finally:
        for proc in procs:
            stop(proc)


# --- Load -----------------------------------------------------------------------------------------------------------


def payment_body(run: str, n: int, orders: int) -> bytes:
    sellers = ("seller_7", "seller_9", "seller_12")
    body = {
        "checkout_id": f"{run}_{n}",
        "buyer_info": {"id": f"buyer_{n % 997}"},
        "payment_method": {"token": "pm_card_visa"},
        "payment_orders": [
            {
                "payment_order_id": f"po_{run}_{n}_{i}",
                "seller_account": sellers[i % len(sellers)],
                "amount": "19.99",
                "currency": "EUR",
            }
            for i in range(orders)
        ],
    }
    return json.dumps(body, separators=(",", ":")).encode()


def api_only(port: int, api_key: str, *, orders: int, concurrency: int, seconds: float) -> Tally:
    run = f"api{secrets.token_hex(3)}"
    numbers = itertools.count()

    def build() -> bytes:
        n = next(numbers)
        body = payment_body(run, n, orders)
        return (
            f"POST /v1/payments HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {api_key}\r\nIdempotency-Key: {run}_{n}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode() + body

    tally = Tally()
    load(Endpoint("payments", build), port, concurrency, min(2.0, seconds / 5), Tally())  # warm-up
    load(Endpoint("payments", build), port, concurrency, seconds, tally)
    return tally


@dataclass
class Offered:
    run: str
    sent: int = 0
    accepted: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    started: float = 0.0
    ended: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds per accepted request, as the client saw it


def steady_load(port: int, api_key: str, *, rate: float, seconds: float, orders: int, threads: int) -> Offered:
    """Open loop: request i is due at start + i / rate, whatever happened to the ones before it."""
    offered = Offered(run=f"e2e{secrets.token_hex(3)}")
    slots = itertools.count()
    total = int(rate * seconds)
    lock = threading.Lock()
    offered.started = time.monotonic() + 0.2

    def worker() -> None:
        while True:
            n = next(slots)
            if n >= total:
                return
            delay = offered.started + n / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            body = payment_body(offered.run, n, orders)
            headers = {
                "Content-Type": "application/json",
                "Authorization": f"Bearer {api_key}",
                "Idempotency-Key": f"{offered.run}_{n}",
            }
            sent_at = time.monotonic()
            try:
                conn = http.client.HTTPConnection(HOST, port, timeout=30)
                conn.request("POST", "/v1/payments", body=body, headers=headers)
                status = str(conn.getresponse().status)
                conn.close()
            except OSError as exc:
                status = type(exc).__name__
            with lock:
                offered.sent += 1
                offered.statuses[status] += 1
                offered.accepted += status == "201"
                if status == "201":
                    offered.latencies.append(time.monotonic() - sent_at)

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    offered.ended = time.monotonic()
    return offered


def backdate_baseline(bench_url: str) -> None:
    with psycopg.connect(bench_url) as conn:
        conn.execute("UPDATE payments_paymentorder SET created_at = created_at - interval '1 day'")


# --- Results --------------------------------------------------------------------------------------------------------

_COMPLETIONS = """
SELECT e.created_at,
       CASE WHEN count(*) = count(*) FILTER (WHERE o.status = 'SUCCESS') THEN max(t.created_at) END
FROM payments_paymentevent e
JOIN payments_paymentorder o ON o.event_id = e.id
LEFT JOIN payments_ordertransition t ON t.order_id = o.id AND t.to_status = 'SUCCESS'
WHERE e.checkout_id LIKE %s
GROUP BY e.id
"""

_INVARIANTS = {
    "SUCCESS orders without exactly one pay-in": """
        SELECT count(*) FROM payments_paymentorder o
        WHERE o.status = 'SUCCESS' AND (SELECT count(*) FROM ledger_journaltransaction j
                                        WHERE j.kind = 'payin' AND j.reference = o.payment_order_id) <> 1""",
    "orders charged more than once at the PSP": f"SELECT count(*) FROM ({CHARGED_TWICE}) twice",  # noqa: S608 - constants
    "currencies whose ledger does not sum to zero": """
        SELECT count(*) FROM (SELECT currency FROM ledger_entry
                              GROUP BY currency HAVING sum(CASE side WHEN 'D' THEN amount ELSE -amount END) <> 0) c""",
}


@dataclass
class Completion:
    created: int
    completed: int
    in_window: int
    window: float
    latencies: list[float]

    def percentile(self, fraction: float) -> float:
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def completions(bench_url: str, offered: Offered, window: float) -> Completion:
    with psycopg.connect(bench_url) as conn:
        rows = conn.execute(_COMPLETIONS, [f"{offered.run}_%"]).fetchall()
    done = [(created, completed) for created, completed in rows if completed is not None]
    latencies = [(completed - created).total_seconds() for created, completed in done]
    first = min((created for created, _ in rows), default=None)
    in_window = sum(1 for _, completed in done if first is not None and (completed - first).total_seconds() <= window)
    return Completion(len(rows), len(done), in_window, window, latencies)


def wait_for_completion(bench_url: str, offered: Offered, drain: float) -> None:
    deadline = time.monotonic() + drain
    while time.monotonic() < deadline:
        with psycopg.connect(bench_url) as conn:
            left = conn.execute(
                "SELECT count(*) FROM payments_paymentorder o JOIN payments_paymentevent e ON e.id = o.event_id "
                "WHERE e.checkout_id LIKE %s AND o.status <> 'SUCCESS'",
                [f"{offered.run}_%"],
            ).fetchone()
        if left is not None and left[0] == 0:
            return
        time.sleep(0.5)


def invariants(bench_url: str) -> dict[str, int]:
    with psycopg.connect(bench_url) as conn:
        return {name: conn.execute(query).fetchone()[0] for name, query in _INVARIANTS.items()}  # type: ignore[index]


def report(
    api: Tally,
    offered: Offered,
    done: Completion,
    broken: dict[str, int],
    cpu: dict[str, float],
    busy: float,
    args: argparse.Namespace,
) -> int:
    api_rate = api.ok / api.elapsed if api.elapsed else 0.0
    completed_rate = done.in_window / done.window
    p50, p99 = done.percentile(0.50), done.percentile(0.99)
    offered_rate = offered.sent / max(offered.ended - offered.started, 1e-9)
    print()
    print(f"API only (baseline): {api_rate:8.1f} payments/s created   ({api.ok} answers, {api.errors} errors)")
    print(
        f"offered:             {offered_rate:8.1f} payments/s for {args.seconds:g} s   "
        f"({offered.accepted}/{offered.sent} accepted; {dict(offered.statuses)})"
    )
    answers = sorted(offered.latencies) or [math.nan]
    print(
        f"API answers (phase 2): p50 {answers[len(answers) // 2] * 1000:.0f} ms   "
        f"p99 {answers[max(0, math.ceil(0.99 * len(answers)) - 1)] * 1000:.0f} ms"
    )
    print(
        f"completed/s:         {completed_rate:8.1f} within the {done.window:g} s window   "
        f"({done.completed}/{done.created} completed in all, {done.created - done.completed} unfinished)"
    )
    worst = max(done.latencies or [0.0])
    print(f"completion latency:  p50 {p50 * 1000:7.0f} ms   p99 {p99 * 1000:7.0f} ms   max {worst * 1000:7.0f} ms")
    print(f"completed ÷ API-only: {completed_rate / api_rate if api_rate else math.nan:.2f}")
    per_payment = {name: seconds * 1000 / max(done.completed, 1) for name, seconds in cpu.items()}
    print(
        "CPU per completed payment (phase 2): "
        + ", ".join(f"{name} {ms:.1f} ms" for name, ms in per_payment.items())
        + f"; total {sum(per_payment.values()):.1f} ms"
    )
    print(f"machine busy during phase 2: {busy:.2f} of {os.cpu_count()} CPUs (every process and the kernel)")
    for name, count in broken.items():
        print(f"invariant: {name}: {count}")
    problems = []
    if any(broken.values()):
        problems.append("an invariant is broken")
    if offered.accepted != offered.sent:
        problems.append("the API refused or failed some requests")
    if problems:
        print(f"INVALID: {'; '.join(problems)}")
        return 1
    target_met = completed_rate >= TARGET_COMPLETED_PER_SECOND and p99 <= TARGET_P99_SECONDS
    print(
        f"target (≥ {TARGET_COMPLETED_PER_SECOND:g} completed/s, p99 ≤ {TARGET_P99_SECONDS:g} s): "
        f"{'PASS' if target_met else 'FAIL'}"
    )
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--rate", type=positive(float), default=100.0, help="payments created per second (100)")
    parser.add_argument("--seconds", type=positive(float), default=60.0, help="length of the steady load (60)")
    parser.add_argument("--orders", type=positive(int), default=1, help="orders per payment (1)")
    parser.add_argument("--workers", type=positive(int), default=2, help="Celery worker processes (2)")
    parser.add_argument("--concurrency", type=positive(int), default=8, help="threads per worker process (8)")
    parser.add_argument(
        "--web-threads", type=positive(int), default=4, help="threads per web worker, as in the Procfile (4; 1: sync)"
    )
    parser.add_argument("--pool", choices=("threads", "prefork"), default="threads", help="Celery pool (threads)")
    parser.add_argument("--drain", type=positive(float), default=30.0, help="wait for the last payments (30 s)")
    parser.add_argument("--api-seconds", type=positive(float), default=10.0, help="API-only baseline length (10)")
    parser.add_argument("--api-concurrency", type=positive(int), default=16, help="API-only requests in flight (16)")
    args = parser.parse_args(argv)
    if not bench_ready("bench-e2e", ("DATABASE_URL", "SECRET_KEY")):
        return 2
    try:
        bench_url, maintenance_url, db_name = bench_database_urls(os.environ["DATABASE_URL"], "_bench")
        print(f"CPUs: {os.cpu_count()}   python {sys.version.split()[0]}   database: {db_name} (recreated)")
        print(
            f"web: 2 gunicorn workers x {args.web_threads} threads; sandbox: 2 x 8 threads; "
            f"Celery: {args.workers} processes x {args.concurrency} threads; {args.orders} order(s) per payment"
        )
        recreate_database(maintenance_url, db_name)
        env = {**child_env(bench_url), "CELERY_QUEUE_SUFFIX": QUEUE_SUFFIX}
        web_port, psp_port = free_port(), free_port()
        env["STRIPE_API_BASE"] = f"http://{HOST}:{psp_port}"
        env.pop("STRIPE_API_KEY", None)
        manage(env, "migrate", "--noinput", "-v", "0")
        api_key = create_api_key(env)
        with ExitStack() as stack:
            psp = stack.enter_context(
                sandbox(env, psp_port, webhook_url=f"http://{HOST}:{web_port}/v1/webhooks/stripe")
            )
            web = stack.enter_context(gunicorn(env, web_port, threads=args.web_threads))
            print(f"phase 1: API only, concurrency {args.api_concurrency}, {args.api_seconds:g} s")
            api = api_only(
                web_port, api_key, orders=args.orders, concurrency=args.api_concurrency, seconds=args.api_seconds
            )
            queues_delete(QUEUE_SUFFIX)
            # The baseline's payments stay unexecuted: the relay, starting now, would catch up on recent ones.
            backdate_baseline(bench_url)
            workers = stack.enter_context(celery_workers(env, args.workers, args.concurrency, args.pool))
            relayer = stack.enter_context(manage_process(env, "relay_executions"))
            groups = {
                "web": [web.pid],
                "psp": [psp.pid],
                "celery": [proc.pid for proc in workers],
                "relay": [relayer.pid],
            }
            print(f"phase 2: {args.rate:g} payments/s for {args.seconds:g} s, then up to {args.drain:g} s to finish")
            cpu_before, own_before = cpu_by_process(groups), time.process_time()
            busy_before, wall_before = machine_busy_seconds(), time.monotonic()
            offered = steady_load(
                web_port, api_key, rate=args.rate, seconds=args.seconds, orders=args.orders, threads=32
            )
            wait_for_completion(bench_url, offered, args.drain)
            spent = cpu_delta(cpu_before, cpu_by_process(groups))
            own_after = time.process_time()
            cpu = {name: spent.get(name, 0.0) for name in [*groups, "postgres", "redis"]}
            cpu["load generator"] = own_after - own_before
            busy = (machine_busy_seconds() - busy_before) / (time.monotonic() - wall_before)
            done = completions(bench_url, offered, args.seconds)
            broken = invariants(bench_url)
    except (BenchError, psycopg.Error) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        queues_delete(QUEUE_SUFFIX)
    return report(api, offered, done, broken, cpu, busy, args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
