"""The chaos run: payments through the whole system while its parts fail, then proof that nothing was lost or charged
twice. ``manage.py chaos`` (or ``make chaos``) runs it; ``--seed`` reproduces a run's choices and the sandbox's faults.

What runs, each in its own processes, on a database and a Redis of the run's own (``<name>_chaos_bench``, a Redis
server started here so that it can be restarted for real): the sandbox PSP with faults on (latency, 5xx, 429,
timeouts past the client's, applied-but-response-lost; webhooks dropped, duplicated, reordered), our web server, the
execution relay, two Celery workers, and the recovery sweep every two seconds (beat's minute, shortened).

What happens: ``--payments`` payments are created through the API (random sellers, EUR/USD/JPY, test cards: most
succeed, some decline, some need 3-D Secure, confirmed or failed at the sandbox's bank page, some finish only by
webhook). Meanwhile a worker is SIGKILLed and restarted three times, and Redis once. Then the run waits until every
accepted order is final or in the dead letter queue, and checks:

- PSP charges per order ≤ 1 (counted in the sandbox);
- every accepted order is final, or in the dead letter queue with a reason;
- the ledger sums to zero per currency, every wallet equals its ledger accounts, every captured order has its pay-in
  (``manage.py ledger_check``);
- the sandbox's captured totals equal our SUCCESS totals, per currency.

It prints progress while it runs and exits 1 on any violation.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import requests

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))

from bench.api import HOST, child_env, create_api_key, free_port, gunicorn, manage, stop  # noqa: E402
from bench.harness import BenchError, bench_database_urls, exit_on_signal, positive, recreate_database  # noqa: E402
from bench.processes import CHARGED_TWICE, RedisServer, celery_worker, manage_process, sandbox  # noqa: E402
from ledger.money import to_minor  # noqa: E402

CURRENCIES = {"EUR": Decimal("19.99"), "USD": Decimal("7.50"), "JPY": Decimal("1200")}
# (payment method, weight): mostly successes, with every other path represented.
CARDS = [
    ("pm_card_visa", 60),
    ("pm_card_chargeDeclined", 8),
    ("pm_card_chargeDeclinedInsufficientFunds", 5),
    ("pm_card_authenticationRequired", 15),
    ("pm_card_processing", 12),
]
SANDBOX_FAULTS = {
    "SANDBOX_LATENCY_MS": "10",
    "SANDBOX_FAULT_5XX_RATE": "0.05",
    "SANDBOX_FAULT_429_RATE": "0.05",
    "SANDBOX_FAULT_RESET_RATE": "0.02",
    "SANDBOX_FAULT_TIMEOUT_RATE": "0.02",
    "SANDBOX_FAULT_TIMEOUT_SECONDS": "4",
    "SANDBOX_FAULT_LOST_RESPONSE_RATE": "0.05",
    "SANDBOX_WEBHOOK_DROP_RATE": "0.1",
    "SANDBOX_WEBHOOK_DUPLICATE_RATE": "0.1",
    "SANDBOX_WEBHOOK_REORDER_RATE": "0.1",
    "SANDBOX_WEBHOOK_RETRY_BASE_SECONDS": "0.5",
    "SANDBOX_WEBHOOK_RETRY_CAP_SECONDS": "2",
    "SANDBOX_PROCESSING_DELAY_SECONDS": "1",
}
# The project's timings, shortened so that a run settles in minutes: the sweep looks at an order after 3 s, retries
# back off from 1 s to 3 s, the PSP client gives up after 2 s (before the sandbox's held "timeout" calls answer).
PROJECT_TIMINGS = {
    "RECOVERY_STALE_SECONDS": "3",
    "RECOVERY_PENDING_LOOKUP_SECONDS": "3",
    "PSP_RETRY_BACKOFF_SECONDS": "1",
    "PSP_RETRY_BACKOFF_MAX_SECONDS": "3",
    "PSP_RETRY_MAX_ATTEMPTS": "10",
    "STRIPE_TIMEOUT_SECONDS": "2",
    "WEBHOOK_RETRY_BASE_SECONDS": "1",
    "ORDER_IN_FLIGHT_ALERT_SECONDS": "3600",
}
QUEUE_SUFFIX = ".chaos"


def worker(env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
    queues = [f"{queue}{QUEUE_SUFFIX}" for queue in ("default", "payments", "webhooks", "maintenance")]
    return celery_worker(env, name, queues=queues)


# --- The load ---------------------------------------------------------------------------------------------------------


def drive(port: int, api_key: str, *, payments: int, rng: random.Random, threads: int) -> dict[str, int]:
    """Create the payments through the API; returns the answers by status."""
    plans = []
    for n in range(payments):
        currency = rng.choice(list(CURRENCIES))
        card = rng.choices([c for c, _ in CARDS], weights=[w for _, w in CARDS])[0]
        sellers = rng.sample([f"seller_{i}" for i in range(10)], k=rng.choice((1, 2)))
        plans.append((n, currency, card, sellers))
    run = f"chaos{rng.randrange(16**6):06x}"
    answers: dict[str, int] = {}
    lock = threading.Lock()
    slots = iter(plans)

    def post() -> None:
        session = requests.Session()
        while True:
            with lock:
                plan = next(slots, None)
            if plan is None:
                return
            n, currency, card, sellers = plan
            body: dict[str, Any] = {
                "checkout_id": f"{run}_{n}",
                "buyer_info": {"id": f"buyer_{n % 50}"},
                "payment_method": {"token": card},
                "payment_orders": [
                    {
                        "payment_order_id": f"po_{run}_{n}_{i}",
                        "seller_account": seller,
                        "amount": str(CURRENCIES[currency]),
                        "currency": currency,
                    }
                    for i, seller in enumerate(sellers)
                ],
            }
            headers = {"Authorization": f"Bearer {api_key}", "Idempotency-Key": f"{run}_{n}"}
            status = "error"
            for _ in range(5):  # a client retries a failed request with the same key, as the API asks
                try:
                    answer = session.post(f"http://{HOST}:{port}/v1/payments", json=body, headers=headers, timeout=30)
                    status = str(answer.status_code)
                except requests.RequestException:
                    status = "error"
                if status == "201":
                    break
                time.sleep(0.5)
            with lock:
                answers[status] = answers.get(status, 0) + 1

    pool = [threading.Thread(target=post, daemon=True) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return answers


def authenticate_pending(bench_url: str, psp_url: str, rng: random.Random) -> int:
    """The buyers at the bank's page: each PENDING order waiting on 3-D Secure is confirmed (mostly) or failed."""
    with psycopg.connect(bench_url) as conn:
        rows = conn.execute(
            "SELECT DISTINCT psp_reference FROM payments_paymentorder WHERE status = 'PENDING' AND action_url <> ''"
        ).fetchall()
    done = 0
    for (reference,) in rows:
        outcome = "succeed" if rng.random() < 0.8 else "fail"
        try:
            requests.post(
                f"{psp_url}/v1/sandbox/payment_intents/{reference}/authenticate",
                data={"outcome": outcome},
                headers={"Authorization": "Bearer sk_test_sandbox"},
                timeout=5,
            )
            done += 1
        except requests.RequestException:
            pass
    return done


# --- The checks -------------------------------------------------------------------------------------------------------

_STATE = """
SELECT o.status, count(*) FROM payments_paymentorder o GROUP BY o.status ORDER BY o.status
"""
_UNSETTLED = """
SELECT o.payment_order_id, o.status FROM payments_paymentorder o
WHERE o.status NOT IN ('SUCCESS', 'FAILED', 'PARTIALLY_REFUNDED', 'REFUNDED')
  AND NOT EXISTS (SELECT 1 FROM payments_deadletter d
                  WHERE d.object_id = o.payment_order_id AND d.resolved_at IS NULL)
ORDER BY o.id
"""
_PSP_CAPTURED = "SELECT upper(currency), sum(amount) FROM psp_sandbox_charge WHERE status = 'succeeded' GROUP BY 1"
_OURS_CAPTURED = "SELECT amount_currency, sum(amount) FROM payments_paymentorder WHERE status = 'SUCCESS' GROUP BY 1"


def unsettled(bench_url: str) -> list[tuple[str, str]]:
    with psycopg.connect(bench_url) as conn:
        return [(str(a), str(b)) for a, b in conn.execute(_UNSETTLED).fetchall()]


def state(bench_url: str) -> dict[str, int]:
    with psycopg.connect(bench_url) as conn:
        return {str(status): int(count) for status, count in conn.execute(_STATE).fetchall()}


def checks(bench_url: str, env: dict[str, str]) -> list[str]:
    problems = []
    with psycopg.connect(bench_url) as conn:
        twice = conn.execute(CHARGED_TWICE).fetchall()
        psp = {str(c): int(total) for c, total in conn.execute(_PSP_CAPTURED).fetchall()}
        ours = {str(c): to_minor(Decimal(total), str(c)) for c, total in conn.execute(_OURS_CAPTURED).fetchall()}
        letters = conn.execute("SELECT count(*) FROM payments_deadletter WHERE resolved_at IS NULL").fetchone()
    print(f"PSP charges per order ≤ 1: {'ok' if not twice else f'VIOLATED for {twice[:5]}'}")
    if twice:
        problems.append("an order was charged more than once")
    left = unsettled(bench_url)
    print(f"every order final or dead-lettered: {'ok' if not left else f'VIOLATED: {left[:10]}'}")
    print(f"open dead letters: {letters[0] if letters else 0}")
    if left:
        problems.append(f"{len(left)} orders neither final nor dead-lettered")
    ledger = subprocess.run(
        [sys.executable, "manage.py", "ledger_check"], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    print(f"ledger zero per currency, wallets equal accounts, one pay-in per capture: "
          f"{'ok' if ledger.returncode == 0 else 'VIOLATED'}")  # fmt: skip
    if ledger.returncode != 0:
        print(ledger.stdout[-2000:])
        problems.append("the ledger check failed")
    print(f"captured per currency, PSP {psp} / ours {ours}: {'ok' if psp == ours else 'VIOLATED'}")
    if psp != ours:
        problems.append("the PSP's captured totals differ from our SUCCESS totals")
    return problems


# --- The run ----------------------------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--payments", type=positive(int), default=300, help="payments to create (300)")
    parser.add_argument("--seed", type=int, default=7, help="seed of every random choice and fault (7)")
    parser.add_argument("--threads", type=positive(int), default=8, help="API clients at once (8)")
    parser.add_argument("--settle", type=positive(float), default=240.0, help="longest wait for the end (240 s)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, exit_on_signal)
    rng = random.Random(args.seed)
    if not os.environ.get("DATABASE_URL") or not os.environ.get("SECRET_KEY"):
        print("chaos: DATABASE_URL and SECRET_KEY must be set (make chaos sets them)", file=sys.stderr)
        return 2
    redis_server = RedisServer()
    try:
        bench_url, maintenance_url, db_name = bench_database_urls(os.environ["DATABASE_URL"], "_chaos_bench")
        print(f"chaos: seed {args.seed}, {args.payments} payments, database {db_name} (recreated)", flush=True)
        recreate_database(maintenance_url, db_name)
        redis_server.start()
        env = {
            **child_env(bench_url),
            **PROJECT_TIMINGS,
            "REDIS_URL": redis_server.url,
            "CELERY_BROKER_URL": redis_server.url,
            "CELERY_QUEUE_SUFFIX": QUEUE_SUFFIX,
        }
        env.pop("STRIPE_API_KEY", None)
        web_port, psp_port = free_port(), free_port()
        psp_url = f"http://{HOST}:{psp_port}"
        env["STRIPE_API_BASE"] = psp_url
        manage(env, "migrate", "--noinput", "-v", "0")
        api_key = create_api_key(env)
        sandbox_env = {**env, **SANDBOX_FAULTS, "SANDBOX_FAULT_SEED": str(args.seed)}
        with ExitStack() as stack:
            webhook_url = f"http://{HOST}:{web_port}/v1/webhooks/stripe"
            stack.enter_context(sandbox(sandbox_env, psp_port, webhook_url=webhook_url))
            stack.enter_context(gunicorn(env, web_port, threads=4))
            stack.enter_context(manage_process(env, "relay_executions"))
            stack.enter_context(manage_process(env, "recovery_sweep", "--every", "2"))
            workers = [worker(env, f"chaos{n}") for n in range(2)]

            def stop_workers() -> None:
                for proc in workers:
                    stop(proc)

            stack.callback(stop_workers)
            result = run_chaos(args, rng, bench_url, env, psp_url, web_port, api_key, workers, redis_server)
            problems = checks(bench_url, env) + result
    except (BenchError, psycopg.Error) as exc:
        print(f"chaos: {exc}", file=sys.stderr)
        return 2
    finally:
        redis_server.kill()
    if problems:
        print(f"FAILED: {'; '.join(problems)}")
        return 1
    print("PASSED: nothing lost, nothing charged twice, the books balance")
    return 0


def run_chaos(
    args: argparse.Namespace,
    rng: random.Random,
    bench_url: str,
    env: dict[str, str],
    psp_url: str,
    web_port: int,
    api_key: str,
    workers: list[subprocess.Popen[bytes]],
    redis_server: RedisServer,
) -> list[str]:
    answers: dict[str, int] = {}
    driver = threading.Thread(
        target=lambda: answers.update(
            drive(web_port, api_key, payments=args.payments, rng=random.Random(rng.random()), threads=args.threads)
        ),
        daemon=True,
    )
    started = time.monotonic()
    driver.start()
    # The faults of the run's own: worker kills at three moments, one Redis restart, while the load goes on.
    events = sorted([(rng.uniform(1, 8), "kill"), (rng.uniform(2, 9), "kill"), (rng.uniform(3, 10), "kill")])
    events.append((rng.uniform(4, 8), "redis"))
    events.sort()
    buyers = random.Random(rng.random())
    for moment, what in events:
        time.sleep(max(0.0, started + moment - time.monotonic()))
        if what == "kill":
            victim = rng.randrange(len(workers))
            workers[victim].send_signal(signal.SIGKILL)
            workers[victim].wait()
            workers[victim] = worker(env, f"chaos{victim}r{int(moment * 10)}")
            print(f"  t+{moment:4.1f}s  SIGKILL worker {victim}, restarted", flush=True)
        else:
            redis_server.kill()
            time.sleep(1.0)
            redis_server.start()
            print(f"  t+{moment:4.1f}s  Redis killed and restarted", flush=True)
    deadline = time.monotonic() + args.settle
    for tick in itertools.count():
        authenticate_pending(bench_url, psp_url, buyers)
        left = unsettled(bench_url) if not driver.is_alive() else None
        if tick % 5 == 0:
            print(f"  t+{time.monotonic() - started:5.1f}s  orders {json.dumps(state(bench_url))}", flush=True)
        if left == []:
            break
        if time.monotonic() > deadline:
            break
        time.sleep(1.0)
    driver.join(timeout=1)
    print(f"API answers: {answers}")
    accepted = answers.get("201", 0)
    return [] if accepted == args.payments else [f"only {accepted} of {args.payments} payments were accepted"]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
