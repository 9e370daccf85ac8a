"""Instructions per answer of POST /v1/payments and of the ceilings, counted by callgrind: the web process's work in a
figure that does not move with the machine's load.

What is measured
    Each endpoint of ``bench/api.py`` (the same bodies, the same ``bench.settings`` and database) is called through
    Django's test client in a Python process run under ``valgrind --tool=callgrind``: no gunicorn, no network between
    client and server, and only this process's instructions (PostgreSQL's and Redis's work is not counted). The
    process serves ``WARM_UP`` requests uninstrumented (imports, URL resolution, the first connection), then switches
    counting on (``callgrind_control -i on``) and serves N more. It runs twice per endpoint, with N = ``--few`` and
    N = ``--many``: the difference divided by the extra requests is the cost of one answer, without the fixed cost of
    switching counting on.

How to read it
    Instruction counts repeat to within a fraction of a per cent whatever else the machine does, so two commits can be
    compared on a noisy machine where ``make bench-api``'s req/s cannot tell them apart. They are not time: a cache
    miss costs many instructions' worth, and the database's share is not here at all. The ratio of the ceiling's
    instructions to the payment's is printed for context; the target (``make bench-api``) is on req/s.

Needs valgrind (``valgrind`` and ``callgrind_control`` on PATH), DATABASE_URL, REDIS_URL and SECRET_KEY (``make
bench-instructions`` provides the last three). Each endpoint takes about a minute.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))

from bench.api import QUEUE_SUFFIX, ceiling_body, child_env, create_api_key, manage, payment_body  # noqa: E402
from bench.harness import (  # noqa: E402
    BenchError,
    bench_database_urls,
    bench_ready,
    positive,
    queues_delete,
    recreate_database,
)

ENDPOINTS = ("ceiling", "ceiling-drf", "payments")
WARM_UP = 20
_COLLECTED = re.compile(r"Collected : (\d+)")


def serve(endpoint: str, api_key: str, count: int) -> None:
    """In the measured process: WARM_UP answers uncounted, then ``count`` counted ones."""
    import django

    django.setup()
    from django.test import Client

    client = Client(HTTP_HOST="127.0.0.1")
    run, numbers = secrets.token_hex(6), itertools.count(1)

    def answer() -> None:
        n = next(numbers)
        if endpoint == "payments":
            response = client.post(
                "/v1/payments",
                json.dumps(payment_body(run, n)),
                content_type="application/json",
                HTTP_AUTHORIZATION=f"Bearer {api_key}",
                HTTP_IDEMPOTENCY_KEY=f"bench_{run}_{n}",
            )
        else:
            path = "/bench/ceiling" if endpoint == "ceiling" else "/bench/ceiling-drf"
            response = client.post(path, json.dumps(ceiling_body(n)), content_type="application/json")
        if response.status_code != 201:
            raise BenchError(f"{endpoint} answered {response.status_code}: {response.content[:200]!r}")

    for _ in range(WARM_UP):
        answer()
    subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], check=True, capture_output=True)
    for _ in range(count):
        answer()


def counted(env: dict[str, str], endpoint: str, api_key: str, count: int) -> int:
    """Instructions counted while ``count`` answers were served, in a process of their own under callgrind."""
    with tempfile.TemporaryDirectory() as scratch:
        result = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={scratch}/callgrind.out",
                sys.executable,
                __file__,
                "--serve",
                endpoint,
                "--count",
                str(count),
            ],
            cwd=ROOT,
            env={**env, "BENCH_API_KEY": api_key},
            capture_output=True,
            text=True,
            check=False,
        )
    found = _COLLECTED.search(result.stderr)
    if result.returncode != 0 or found is None:
        raise BenchError(f"{endpoint} under callgrind failed (exit {result.returncode}): {result.stderr[-2000:]}")
    return int(found.group(1))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--few", type=positive(int), default=40, help="answers counted in the first run (default 40)")
    parser.add_argument("--many", type=positive(int), default=120, help="in the second run (default 120)")
    parser.add_argument("--serve", choices=ENDPOINTS, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, os.environ["BENCH_API_KEY"], args.count)
        return 0
    if args.many <= args.few:
        parser.error("--many must be larger than --few")
    if not bench_ready("bench-instructions", ("DATABASE_URL", "SECRET_KEY")):
        return 2
    missing = [tool for tool in ("valgrind", "callgrind_control") if shutil.which(tool) is None]
    if missing:
        print(f"bench: {', '.join(missing)} not found (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    try:
        bench_url, maintenance_url, db_name = bench_database_urls(os.environ["DATABASE_URL"], "_bench")
        print(f"python {sys.version.split()[0]}   database: {db_name} (recreated)   in-process, Django's test client")
        print(f"per endpoint: {WARM_UP} answers uncounted, then ({args.many} - {args.few}) answers' instructions")
        recreate_database(maintenance_url, db_name)
        env = child_env(bench_url)
        manage(env, "migrate", "--noinput", "-v", "0")
        api_key = create_api_key(env)
        per_answer = {}
        for endpoint in ENDPOINTS:
            few, many = (counted(env, endpoint, api_key, count) for count in (args.few, args.many))
            per_answer[endpoint] = (many - few) / (args.many - args.few)
            print(f"{endpoint:12s} {per_answer[endpoint] / 1e6:8.3f} million instructions per answer")
    except (BenchError, psycopg.Error) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        queues_delete(QUEUE_SUFFIX)
    print(f"\nceiling / payments     = {per_answer['ceiling'] / per_answer['payments']:.2f}   (for context)")
    print(f"ceiling-drf / payments = {per_answer['ceiling-drf'] / per_answer['payments']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
