"""The sandbox PSP's CPU cost per confirmed PaymentIntent and its webhook, beside Django's floor in the same run.

What runs
    The sandbox as the Procfile runs it (gunicorn, 2 gthread workers x 8 threads, its delivery loop in each) on a
    database of its own (DATABASE_URL's name + ``_bench_sandbox``, recreated and migrated), with its webhooks going to
    a tiny endpoint in this process that answers 200 at once.

Phases
    1. Idle: nothing asked for ``--idle-seconds``; what the delivery loop and the clock cost by themselves.
    2. Floor: ``GET /v1/payment_intents/{id}`` ``--gets`` times from ``--clients`` threads through stripe-python: the
       cheapest authenticated call, Django's own cost per request in this process.
    3. Payments: ``--intents`` PaymentIntents created as our executor creates them (stripe-python,
       ``max_network_retries=0``, ``confirm=true``, ``pm_card_visa``, ``metadata[payment_order_id]``, the order id as
       ``Idempotency-Key``) from ``--clients`` threads; the phase ends once every ``payment_intent.succeeded``
       webhook has arrived and been recorded as delivered.

What is measured
    CPU time (utime + stime from /proc) of every process in the sandbox's process group (master and workers), and of
    every process named ``postgres*`` (the whole server: other work on the machine counts too), over each phase;
    divided by the calls (or, idle, by the seconds). Then the sanity checks: every webhook arrived once, one charge
    per intent, every delivery recorded on its first attempt.

Needs DATABASE_URL and SECRET_KEY in the environment. ``python bench/sandbox.py --intents 1000``.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import secrets
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))

from bench.api import HOST, free_port, manage  # noqa: E402
from bench.harness import BenchError, bench_database_urls, exit_on_signal, positive, recreate_database  # noqa: E402
from bench.processes import cpu_by_process, cpu_delta, sandbox  # noqa: E402

API_KEY = "sk_test_sandbox"
SUFFIX = "_bench_sandbox"


# --- Processes ------------------------------------------------------------------------------------------------------


def sandbox_env(bench_url: str, webhook_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=bench_url,
        DJANGO_SETTINGS_MODULE="psp_sandbox.settings",
        SANDBOX_WEBHOOK_URL=webhook_url,
        # Persistent connections, as bench/e2e.py runs the sandbox.
        DB_CONN_MAX_AGE="600",
        LOG_LEVEL="WARNING",
    )
    for name in ("DEBUG", "GUNICORN_CMD_ARGS", "STRIPE_API_KEY"):
        env.pop(name, None)
    return env


@dataclass
class Receiver:
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)
    intents: Counter[str] = field(default_factory=Counter)  # payment_intent.succeeded per intent id
    types: Counter[str] = field(default_factory=Counter)
    last_at: float = 0.0

    def count(self) -> int:
        with self.lock:
            return sum(self.intents.values())


@contextmanager
def receiving() -> Iterator[Receiver]:
    receiver = Receiver()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Stripe's endpoints and ours

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
            event = json.loads(body)
            with receiver.lock:
                receiver.types[event["type"]] += 1
                if event["type"] == "payment_intent.succeeded":
                    receiver.intents[event["data"]["object"]["id"]] += 1
                receiver.last_at = time.monotonic()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://{HOST}:{server.server_address[1]}/webhooks/stripe"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


# --- CPU ------------------------------------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    calls: int
    seconds: float
    sandbox_cpu: float
    postgres_cpu: float


@contextmanager
def measured(name: str, pgid: int, phases: list[Phase], calls: Callable[[], int]) -> Iterator[None]:
    before = cpu_by_process({"sandbox": [pgid]})
    started = time.monotonic()
    yield
    seconds = time.monotonic() - started
    spent = cpu_delta(before, cpu_by_process({"sandbox": [pgid]}))
    phases.append(Phase(name, calls(), seconds, spent.get("sandbox", 0.0), spent.get("postgres", 0.0)))


# --- Load -----------------------------------------------------------------------------------------------------------


def client(port: int) -> Any:
    import stripe

    # As payments/psp/stripe.py builds it: no retries, keep-alive sessions (one per thread).
    return stripe.StripeClient(
        API_KEY,
        base_addresses={"api": f"http://{HOST}:{port}"},
        max_network_retries=0,
        http_client=stripe.RequestsClient(timeout=30),
    )


def create_intents(stripe_client: Any, count: int, clients: int, run: str, start: int) -> list[str]:
    def create(n: int) -> str:
        order_id = f"po_{run}_{n}"
        intent = stripe_client.v1.payment_intents.create(
            {
                "amount": 1999,
                "currency": "eur",
                "payment_method": "pm_card_visa",
                "confirm": True,
                "metadata": {"payment_order_id": order_id},
                "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
            },
            {"idempotency_key": order_id},
        )
        if intent.status != "succeeded":
            raise BenchError(f"{intent.id} is {intent.status}")
        return str(intent.id)

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(create, range(start, start + count)))


def retrieve_intents(stripe_client: Any, ids: list[str], count: int, clients: int) -> None:
    def retrieve(n: int) -> None:
        stripe_client.v1.payment_intents.retrieve(ids[n % len(ids)])

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(retrieve, range(count)))


def wait_delivered(receiver: Receiver, expected: int, bench_url: str, timeout: float = 120.0) -> None:
    """Until ``expected`` webhooks arrived and the sandbox has recorded every delivery (no pending row left)."""
    deadline = time.monotonic() + timeout
    while receiver.count() < expected:
        if time.monotonic() > deadline:
            raise BenchError(f"{receiver.count()} of {expected} webhooks arrived within {timeout:.0f} s")
        time.sleep(0.01)
    with psycopg.connect(bench_url, autocommit=True) as conn:
        while conn.execute("SELECT count(*) FROM psp_sandbox_webhookdelivery WHERE status = 'pending'").fetchone()[0]:
            if time.monotonic() > deadline:
                raise BenchError("deliveries still pending")
            time.sleep(0.01)


def check(receiver: Receiver, bench_url: str, intents: int) -> list[str]:
    problems = []
    with receiver.lock:
        twice = [intent for intent, seen in receiver.intents.items() if seen != 1]
        types = dict(receiver.types)
    if twice:
        problems.append(f"{len(twice)} intents' webhooks arrived more than once")
    if types != {"payment_intent.succeeded": intents}:
        problems.append(f"webhooks received: {types}")
    with psycopg.connect(bench_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT (SELECT count(*) FROM psp_sandbox_paymentintent),"
            " (SELECT count(*) FROM psp_sandbox_charge WHERE status = 'succeeded'),"
            " (SELECT count(DISTINCT payment_intent_id) FROM psp_sandbox_charge),"
            " (SELECT count(*) FROM psp_sandbox_webhookdelivery WHERE status = 'delivered' AND attempts = 1),"
            " (SELECT count(*) FROM psp_sandbox_event)"
        ).fetchone()
    assert rows is not None
    if tuple(rows) != (intents,) * 5:
        problems.append(f"intents, succeeded charges, charged intents, delivered once, events: {tuple(rows)}")
    return problems


# --- Report ---------------------------------------------------------------------------------------------------------


def report(phases: list[Phase], problems: list[str]) -> None:
    by_name = {phase.name: phase for phase in phases}
    idle, floor, pay = by_name["idle"], by_name["get"], by_name["intents"]

    def per_call(seconds: float, calls: int) -> str:
        return f"{seconds / calls * 1000:.2f} ms"

    print(f"idle ({idle.seconds:.1f} s): sandbox {idle.sandbox_cpu / idle.seconds * 1000:.1f} ms CPU/s, "
          f"postgres {idle.postgres_cpu / idle.seconds * 1000:.1f} ms CPU/s")  # fmt: skip
    print(f"GET floor: {floor.calls / floor.seconds:.0f} requests/s; per request: sandbox "
          f"{per_call(floor.sandbox_cpu, floor.calls)} CPU, "
          f"postgres {per_call(floor.postgres_cpu, floor.calls)}")  # fmt: skip
    print(f"intents: {pay.calls} in {pay.seconds:.2f} s, {pay.calls / by_name['creates'].seconds:.0f} requests/s, "
          f"{pay.calls / pay.seconds:.0f} webhooks/s")  # fmt: skip
    print(f"per intent + webhook: sandbox {per_call(pay.sandbox_cpu, pay.calls)} CPU "
          f"({pay.sandbox_cpu / pay.calls / (floor.sandbox_cpu / floor.calls):.1f}x the GET floor), "
          f"postgres {per_call(pay.postgres_cpu, pay.calls)} CPU")  # fmt: skip
    for problem in problems:
        print(f"PROBLEM: {problem}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--intents", type=positive(int), default=1000)
    parser.add_argument("--gets", type=positive(int), default=1000)
    parser.add_argument("--clients", type=positive(int), default=4)
    parser.add_argument("--idle-seconds", type=positive(float), default=2.0)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, exit_on_signal)
    signal.signal(signal.SIGHUP, exit_on_signal)
    database_url = os.environ.get("DATABASE_URL")
    if not database_url or not os.environ.get("SECRET_KEY"):
        raise BenchError("DATABASE_URL and SECRET_KEY must be set")
    bench_url, maintenance_url, name = bench_database_urls(database_url, SUFFIX)
    recreate_database(maintenance_url, name)
    run = secrets.token_hex(4)
    phases: list[Phase] = []
    with ExitStack() as stack:
        receiver = stack.enter_context(receiving())
        env = sandbox_env(bench_url, receiver.url)
        manage(env, "migrate", "--verbosity", "0")
        port = free_port()
        proc = stack.enter_context(sandbox(env, port))
        stripe_client = client(port)
        # Warm up both workers (imports, connections, the loop's first rounds); their intents are the GETs' targets.
        warm = create_intents(stripe_client, 40, args.clients, f"warm{run}", 0)
        retrieve_intents(stripe_client, warm, 200, args.clients)
        wait_delivered(receiver, len(warm), bench_url)
        time.sleep(0.5)
        with measured("idle", proc.pid, phases, lambda: 0):
            time.sleep(args.idle_seconds)
        with measured("get", proc.pid, phases, lambda: args.gets):
            retrieve_intents(stripe_client, warm, args.gets, args.clients)
        with measured("intents", proc.pid, phases, lambda: args.intents):
            with measured("creates", proc.pid, phases, lambda: args.intents):
                create_intents(stripe_client, args.intents, args.clients, run, 0)
            wait_delivered(receiver, len(warm) + args.intents, bench_url)
        problems = check(receiver, bench_url, len(warm) + args.intents)
    report(phases, problems)
    return 1 if problems else 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as exc:
        print(f"bench/sandbox.py: {exc}", file=sys.stderr)
        sys.exit(2)
