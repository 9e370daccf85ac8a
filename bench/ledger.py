"""Postings per second through the ledger's posting service, over many sellers and through hot accounts, vs raw SQL.

What is measured
    ``--workers`` processes (16 by default; processes, not threads, so that Python's GIL does not cap the figures),
    each with its own database connections, post in a loop. Every posting is its own transaction and adds one journal
    transaction with three entries, EUR, gross amounts varying from posting to posting. Three workloads:

    - ``(a) spread``: the pay-in posting's exact shape with its two shared accounts replaced by accounts of the
      seller's own: debit ``bench_clearing:<seller>:EUR`` (asset) with the gross, credit the seller's pending wallet
      account with the gross less the platform fee, credit ``bench_fees:<seller>:EUR`` (revenue) with the fee. It
      runs the same code as ``wallets.services.payin_post`` (the same fee helper, ``wallet_ensure``, then
      ``journal_post``), so it does the same work, wallet row update included, except that no two postings for
      different sellers share an account. (A pending -> available move or a pair of unmapped accounts would have been
      two entries, or no wallet update: another amount of work, so the ratio would not isolate the hot accounts.)
    - ``(b) hot``: the real ``payin_post``. The same three entries, the same wallet row, but its debit goes to
      ``psp_clearing:<psp>:EUR`` and its fee to ``platform_fees:EUR``: every posting of every worker touches those
      two accounts. This is the hot-account case.
    - ``(c) raw SQL``: a plain psycopg connection (no Django) in each worker, one transaction per posting: BEGIN, an
      INSERT of the journal header, one INSERT of its three entries (the same accounts as (a)), COMMIT. The same
      round trips as the posting service, into the same tables, so PostgreSQL's own triggers and constraints (the
      balance check at COMMIT, the wallet projection, the foreign keys) run for it as well: the floor of this schema
      on this machine.

    Sellers: ``seller_0`` ... ``seller_999``. Worker ``w`` posts its k-th posting for ``seller_{(w + workers * k) %
    1000}``, so all 1,000 sellers get postings and two workers are (almost) never on the same seller at once: a
    wallet row is not a shared hot spot in (a) or (b). Each workload gets ``--seconds`` in total, cut into
    ``--slices`` slices that alternate (a, b, c, a, b, c, ...), so that noise on the machine (another process, a
    checkpoint, the CPU's clock) hits all three alike. Before that, one untimed warm-up slice per workload. The
    sellers, their wallets and every account exist before the run, and each worker has seen its sellers once before
    it starts (the services' per-process caches are warm): the figures are the steady state of a long-running process.

How to read it
    ``posts/s`` is the postings committed in a workload over the time it ran (from the common start of a slice to the
    end of its last posting). ``p50``/``p99`` are the latencies of single postings (BEGIN to COMMIT as the worker
    saw them). The figures that matter are the ratios, with their targets:

    - (b) / (a) >= 0.8: hot accounts must not serialise postings. A naive balance row that every posting updates
      measured 0.29 on the reference machine.
    - (a) / (c) >= 0.3: what the posting service (Django, the checks, the account look-ups) costs beyond the raw SQL.

    Absolute numbers depend on the machine; the per-slice figures show how steady it was. ``db sessions`` samples
    pg_stat_activity ten times a second during each workload: where the sessions that workload posts through were:
    running, waiting (``Lock:...`` on another transaction's lock, ``LWLock:...`` on a shared buffer or the WAL,
    ``IO:WALSync`` on the disk at COMMIT), or waiting for their worker (``idle``, ``idle in transaction``: the
    worker's Python ran, or waited for a CPU). Lock waits there are what a hot account costs.

    A benchmark that breaks the ledger's invariants proves nothing, so after the run it checks, and prints: debits
    equal credits per currency over all entries, every journal transaction the workers counted is there with three
    entries, and every wallet equals the sums of its ledger accounts. Any broken invariant, or any error in a worker
    (an exception, a deadlock, a serialization failure) makes the run INVALID, and the process exits 1.

Database
    The run never touches the developer's database: it uses ``<name>_bench_ledger`` for the ``<name>`` in
    DATABASE_URL, dropped and created afresh at the start of every run, then migrated (``config.settings``). It is
    left in place at the end so that the rows can be inspected; the next run replaces it.

Needs DATABASE_URL, REDIS_URL and SECRET_KEY in the environment (``make bench-ledger`` provides them).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import secrets
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

if TYPE_CHECKING:
    from ledger.services import AccountRef

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's folder comes first on sys.path, and this file's name would then shadow the ``ledger``
# app. The project's root takes its place (worker processes inherit the parent's sys.path).
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(ROOT)

from bench.harness import (  # noqa: E402
    BenchError,
    bench_database_urls,
    bench_ready,
    migrate,
    positive,
    recreate_database,
    use_bench_database,
)

# The project's modules are imported inside the functions that use them: Django's models can be imported only once
# django.setup() has run, which every process does first. A repeated import is a look-up in sys.modules, a few
# microseconds against the milliseconds of a posting.

DB_SUFFIX = "_bench_ledger"
SELLERS = 1000
CURRENCY = "EUR"
ACTOR = "bench"
TARGET_HOT = 0.8  # (b) / (a)
TARGET_FLOOR = 0.3  # (a) / (c)
# Far above a slice: only a hung worker reaches it, and the run then stops instead of waiting for ever.
WORKER_TIMEOUT = 120.0
SAMPLE_INTERVAL = 0.1
SAMPLES_KEPT = 2

WORKLOADS = {
    "a": "(a) spread",
    "b": "(b) hot",
    "c": "(c) raw SQL",
}
# The journal kinds the workloads post under; the invariant check counts them.
KINDS = {"a": "bench_spread", "b": "payin", "c": "bench_raw"}
# The application_name of the database sessions each workload posts through: each worker has one of each, and the
# session sampler looks only at the sessions of the workload under way.
APP_NAMES = {"a": "bench_ledger_django", "b": "bench_ledger_django", "c": "bench_ledger_raw"}


# --- Set-up (parent process) ------------------------------------------------------------------------------------------


def seller(number: int) -> str:
    return f"seller_{number % SELLERS}"


def spread_accounts(seller_account: str) -> tuple[AccountRef, AccountRef]:
    """(a)'s stand-ins for PSP clearing and platform fees: the same types, but the seller's own."""
    from ledger.models import AccountType
    from ledger.services import AccountRef

    return (
        AccountRef(f"bench_clearing:{seller_account}:{CURRENCY}", AccountType.ASSET, CURRENCY),
        AccountRef(f"bench_fees:{seller_account}:{CURRENCY}", AccountType.REVENUE, CURRENCY),
    )


def create_sellers() -> None:
    """Every seller, wallet and account the run posts to, through the services, before any worker starts: creating
    them is not what is measured."""
    import django

    django.setup()
    from django.db import connection, transaction

    from ledger.services import accounts_ensure
    from wallets.services import platform_fees_account, psp_clearing_account, sellers_ensure, wallet_ensure

    names = [seller(n) for n in range(SELLERS)]
    with transaction.atomic():
        sellers_ensure(accounts=names)
        for name in names:
            wallet_ensure(seller_account=name, currency=CURRENCY)
        extra = [ref for name in names for ref in spread_accounts(name)]
        accounts_ensure(accounts=[*extra, psp_clearing_account(CURRENCY), platform_fees_account(CURRENCY)])
    connection.close()


# --- Workers (one process each) ---------------------------------------------------------------------------------------


def worker_sellers(index: int, workers: int) -> list[str]:
    """The sellers worker ``index`` posts for, in its order: (index + workers * k) % SELLERS for k = 0, 1, ..."""
    order: list[str] = []
    number = index % SELLERS
    while seller(number) not in order:
        order.append(seller(number))
        number = (number + workers) % SELLERS
    return order


class Poster:
    """One worker's three ways of posting, each one posting per call, each its own transaction."""

    def __init__(self, index: int, workers: int, run: str) -> None:
        import django

        django.setup()
        from wallets.models import Bucket
        from wallets.services import wallet_account

        self.index = index
        self.run = run
        self.sellers = worker_sellers(index, workers)
        self.count = 0  # every posting this worker attempted: names the next seller and a fresh reference
        self._name_django_connection()
        ids = self._warm_caches()
        # (c) knows its account ids up front, as a client of its own would: no look-up per posting.
        self.raw_accounts: dict[str, tuple[int, int, int]] = {}
        for name in self.sellers:
            clearing, fees = spread_accounts(name)
            pending = wallet_account(name, CURRENCY, Bucket.PENDING)
            self.raw_accounts[name] = (ids[clearing.code], ids[pending.code], ids[fees.code])
        # Autocommit, so that each posting's transaction is the explicit BEGIN ... COMMIT below; psycopg's other
        # defaults (server-side parameters, statements prepared after a few uses): plain SQL at its plainest.
        self.raw = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True, application_name=APP_NAMES["c"])
        self.post: dict[str, Callable[[str, int, str], None]] = {
            "a": self.post_spread,
            "b": self.post_hot,
            "c": self.post_raw,
        }

    @staticmethod
    def _name_django_connection() -> None:
        """The name under which the session sampler finds the Django connection (kept: Django never resets it)."""
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('application_name', %s, false)", [APP_NAMES["a"]])

    def _warm_caches(self) -> dict[str, int]:
        """Let the services' per-process caches see this worker's sellers, wallets and accounts, as a long-running
        process would have. The rows exist already, so this writes nothing."""
        from django.db import transaction

        from ledger.services import accounts_ensure
        from wallets.models import Bucket
        from wallets.services import (
            platform_fees_account,
            psp_clearing_account,
            sellers_ensure,
            wallet_account,
            wallet_ensure,
        )

        refs = [psp_clearing_account(CURRENCY), platform_fees_account(CURRENCY)]
        for name in self.sellers:
            refs += [*spread_accounts(name), *(wallet_account(name, CURRENCY, bucket) for bucket in Bucket)]
        with transaction.atomic():
            sellers_ensure(accounts=self.sellers)
            ids = accounts_ensure(accounts=refs)
            for name in self.sellers:
                wallet_ensure(seller_account=name, currency=CURRENCY)
        return ids

    def next_posting(self) -> tuple[str, int, str]:
        """(seller, gross amount in cents, reference) of the next posting: a fresh reference every time."""
        n = self.count
        self.count += 1
        return self.sellers[n % len(self.sellers)], 500 + (n * 7919) % 20_000, f"{self.run}-{self.index}-{n}"

    def post_spread(self, seller_account: str, gross: int, reference: str) -> None:
        """payin_post's very code path with the seller's own accounts in place of the shared ones."""
        from django.db import transaction

        from ledger.models import Side
        from ledger.services import Line, journal_post
        from wallets.fees import platform_fee
        from wallets.models import Bucket
        from wallets.services import PayinSplit, wallet_account, wallet_ensure

        clearing, fees = spread_accounts(seller_account)
        split = PayinSplit(gross=gross, fee=platform_fee(gross, CURRENCY))
        lines = [
            Line(clearing, Side.DEBIT, gross),
            Line(wallet_account(seller_account, CURRENCY, Bucket.PENDING), Side.CREDIT, split.seller_share),
            Line(fees, Side.CREDIT, split.fee),
        ]
        with transaction.atomic():
            wallet_ensure(seller_account=seller_account, currency=CURRENCY)
            journal_post(kind=KINDS["a"], reference=reference, lines=lines, actor=ACTOR)

    def post_hot(self, seller_account: str, gross: int, reference: str) -> None:
        from django.db import transaction

        from wallets.services import payin_post

        # payin_post joins an outer transaction; this one is the posting's own, committed here.
        with transaction.atomic():
            payin_post(seller_account=seller_account, currency=CURRENCY, gross=gross, reference=reference, actor=ACTOR)

    _RAW_JOURNAL = (
        "INSERT INTO ledger_journaltransaction (kind, reference, memo, actor) VALUES (%s, %s, '', %s) "
        "RETURNING id, effective_at"
    )
    _RAW_ENTRIES = (
        "INSERT INTO ledger_entry (journal_id, account_id, side, amount, currency, effective_at) "
        "VALUES (%s, %s, %s, %s, %s, %s), (%s, %s, %s, %s, %s, %s), (%s, %s, %s, %s, %s, %s)"
    )

    def post_raw(self, seller_account: str, gross: int, reference: str) -> None:
        clearing, pending, fees = self.raw_accounts[seller_account]
        fee = gross // 20
        # By account id, as journal_post inserts them: wallet rows are locked in one global order.
        lines = sorted([(clearing, "D", gross), (pending, "C", gross - fee), (fees, "C", fee)])
        with self.raw.transaction(), self.raw.cursor() as cursor:
            cursor.execute(self._RAW_JOURNAL, (KINDS["c"], reference, ACTOR))
            row = cursor.fetchone()
            assert row is not None
            journal_id, effective_at = row
            params: list[Any] = []
            for account_id, side, amount in lines:
                params += [journal_id, account_id, side, amount, CURRENCY, effective_at]
            cursor.execute(self._RAW_ENTRIES, params)

    def run_slice(self, workload: str, start_at: float, end_at: float) -> dict[str, Any]:
        """Post until ``end_at`` (the posting under way then is finished and counted), from ``start_at``, which all
        workers share: the slice starts everywhere at once."""
        post = self.post[workload]
        done = 0
        latencies: list[float] = []
        errors: Counter[str] = Counter()
        samples: list[str] = []
        time.sleep(max(0.0, start_at - time.monotonic()))
        ended = time.monotonic()
        while ended < end_at:
            seller_account, gross, reference = self.next_posting()
            started = time.perf_counter()
            try:
                post(seller_account, gross, reference)
            except Exception as exc:  # every failure is counted, reported, and invalidates the run
                errors[type(exc).__name__] += 1
                if len(samples) < SAMPLES_KEPT:
                    samples.append(f"{type(exc).__name__}: {str(exc).strip()[:300]}")
            else:
                done += 1
                latencies.append(time.perf_counter() - started)
            ended = time.monotonic()
        # Plain data only: the parent cannot unpickle classes of this module as a worker names it.
        return {"done": done, "latencies": latencies, "errors": dict(errors), "samples": samples, "ended": ended}

    def close(self) -> None:
        from django.db import connection

        self.raw.close()
        connection.close()


def worker_main(index: int, workers: int, run: str, pipe: Connection) -> None:
    """A worker's life: set up, say ready, then run the slices the parent sends until it sends None."""
    # Ctrl-C reaches the whole process group: the parent decides when workers stop, not the keyboard.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        poster = Poster(index, workers, run)
    except Exception as exc:  # reported to the parent, which stops the run
        pipe.send({"failed": f"worker {index} set-up: {type(exc).__name__}: {exc}"})
        return
    pipe.send({"ready": True})
    try:
        while (command := pipe.recv()) is not None:
            pipe.send(poster.run_slice(*command))
    finally:
        poster.close()


# --- Driving (parent process) -----------------------------------------------------------------------------------------


@dataclass
class Tally:
    done: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds, committed postings only
    errors: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)
    elapsed: float = 0.0  # seconds under load
    slice_rates: list[float] = field(default_factory=list)
    sessions: Counter[str] = field(default_factory=Counter)  # sampled states of the workers' database sessions

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def percentile_ms(self, fraction: float) -> float:
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)] * 1000


_SESSIONS = """
SELECT CASE
         WHEN state = 'active' AND wait_event IS NULL THEN 'running'
         WHEN state = 'active' THEN wait_event_type || ':' || wait_event
         ELSE state || ' (worker side)'
       END
FROM pg_stat_activity
WHERE datname = current_database() AND backend_type = 'client backend' AND application_name = %s
"""


class Workers:
    """The worker processes, and the slices they run together."""

    def __init__(self, count: int, run: str, monitor: psycopg.Connection[Any]) -> None:
        # spawn: every worker starts a fresh interpreter, sets Django up itself and opens its own connections; nothing
        # (no socket, no lock) is inherited from this process.
        context = multiprocessing.get_context("spawn")
        self.monitor = monitor
        self.pipes: list[Connection] = []
        self.processes: list[multiprocessing.process.BaseProcess] = []
        for index in range(count):
            parent_end, child_end = context.Pipe()
            process = context.Process(target=worker_main, args=(index, count, run, child_end), daemon=True)
            process.start()
            child_end.close()
            self.pipes.append(parent_end)
            self.processes.append(process)
        for answer in self._answers():
            if "failed" in answer:
                raise BenchError(answer["failed"])

    def _answers(self) -> list[dict[str, Any]]:
        answers = []
        for index, pipe in enumerate(self.pipes):
            if not pipe.poll(WORKER_TIMEOUT):
                raise BenchError(f"worker {index} did not answer within {WORKER_TIMEOUT:.0f} s")
            try:
                answers.append(pipe.recv())
            except EOFError:
                raise BenchError(f"worker {index} exited (code {self.processes[index].exitcode})") from None
        return answers

    def run_slice(self, workload: str, seconds: float, tally: Tally) -> None:
        # A common start a little ahead, so that every worker has its command before the clock starts.
        start_at = time.monotonic() + 0.05
        end_at = start_at + seconds
        for pipe in self.pipes:
            pipe.send((workload, start_at, end_at))
        time.sleep(max(0.0, start_at - time.monotonic()))
        while time.monotonic() < end_at - SAMPLE_INTERVAL / 2:
            tally.sessions.update(row[0] for row in self.monitor.execute(_SESSIONS, [APP_NAMES[workload]]))
            time.sleep(SAMPLE_INTERVAL)
        done_before = tally.done
        last_end = end_at
        for answer in self._answers():
            tally.done += answer["done"]
            tally.latencies += answer["latencies"]
            tally.errors.update(answer["errors"])
            tally.samples += answer["samples"][: max(0, SAMPLES_KEPT - len(tally.samples))]
            last_end = max(last_end, answer["ended"])
        # Until the last posting ended: the postings under way at the deadline are counted, so is their time.
        elapsed = last_end - start_at
        tally.elapsed += elapsed
        tally.slice_rates.append((tally.done - done_before) / elapsed)

    def stop(self) -> None:
        """Ask every worker to finish, then make sure it has: a hung one is terminated, then killed."""
        for pipe in self.pipes:
            with suppress(OSError):
                pipe.send(None)
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()
        self.pipes, self.processes = [], []


@dataclass
class Run:
    tallies: dict[str, Tally]  # per workload
    warmups: dict[
        str, Tally
    ]  # per workload: not in the figures, but its postings are in the ledger and its errors count


def drive(workers: Workers, *, seconds: float, slices: int, warmup: float) -> Run:
    run = Run({workload: Tally() for workload in WORKLOADS}, {workload: Tally() for workload in WORKLOADS})
    # The first postings of each kind fill the statement caches and the database's buffers: not measured.
    for workload in WORKLOADS:
        workers.run_slice(workload, warmup, run.warmups[workload])
    for _ in range(slices):
        for workload in WORKLOADS:
            workers.run_slice(workload, seconds / slices, run.tallies[workload])
    return run


# --- Invariants (parent process, plain SQL) ---------------------------------------------------------------------------

_PER_CURRENCY = """
SELECT currency,
       coalesce(sum(amount) FILTER (WHERE side = 'D'), 0),
       coalesce(sum(amount) FILTER (WHERE side = 'C'), 0)
FROM ledger_entry GROUP BY currency ORDER BY currency
"""

_JOURNALS = """
SELECT j.kind, count(*), count(*) FILTER (WHERE e.entries <> 3)
FROM ledger_journaltransaction j
LEFT JOIN (SELECT journal_id, count(*) AS entries FROM ledger_entry GROUP BY journal_id) e ON e.journal_id = j.id
GROUP BY j.kind
"""

# Wallet accounts are liabilities: credits raise a bucket, debits lower it.
_WALLETS = """
WITH ledger AS (
    SELECT wa.wallet_id,
           coalesce(sum(CASE WHEN wa.bucket = 'pending' THEN e.signed END), 0) AS pending,
           coalesce(sum(CASE WHEN wa.bucket = 'available' THEN e.signed END), 0) AS available,
           coalesce(sum(CASE WHEN wa.bucket = 'reserved' THEN e.signed END), 0) AS reserved
    FROM wallets_walletaccount wa
    LEFT JOIN (SELECT account_id, CASE side WHEN 'C' THEN amount ELSE -amount END AS signed FROM ledger_entry) e
           ON e.account_id = wa.account_id
    GROUP BY wa.wallet_id
)
SELECT count(*),
       count(*) FILTER (WHERE (w.pending, w.available, w.reserved)
                              IS DISTINCT FROM (l.pending, l.available, l.reserved)),
       coalesce(sum(w.pending), 0)
FROM wallets_wallet w LEFT JOIN ledger l ON l.wallet_id = w.id
"""


def check_invariants(conn: psycopg.Connection[Any], counted: dict[str, int]) -> list[tuple[bool, str]]:
    """(holds, what was checked) for every invariant, after the run."""
    checks = []
    currencies = conn.execute(_PER_CURRENCY).fetchall()
    for currency, debits, credits in currencies:
        checks.append((debits == credits, f"ledger {currency}: debits {debits} = credits {credits}"))
    if not currencies:
        checks.append((False, "ledger: no entries at all"))
    journals = {kind: (n, bad) for kind, n, bad in conn.execute(_JOURNALS).fetchall()}
    for workload, kind in KINDS.items():
        found, bad = journals.get(kind, (0, 0))
        checks.append(
            (
                found == counted[workload] and bad == 0,
                f"journal {kind}: {counted[workload]} committed by the workers, {found} in the ledger, "
                f"{bad} without exactly three entries",
            )
        )
    row = conn.execute(_WALLETS).fetchone()
    assert row is not None
    wallets, differing, pending = row
    checks.append(
        (
            wallets == SELLERS and differing == 0,
            f"wallets: {wallets} of {SELLERS} expected, {differing} differing from their ledger accounts "
            f"(pending in all: {pending})",
        )
    )
    return checks


# --- Report -----------------------------------------------------------------------------------------------------------


def report(run: Run, checks: list[tuple[bool, str]]) -> int:
    rows = [(WORKLOADS[workload], tally) for workload, tally in run.tallies.items()]
    print(f"\n{'workload':<14} {'postings':>9} {'posts/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for name, tally in rows:
        print(
            f"{name:<14} {tally.done:>9} {tally.rate:>9.1f} {tally.percentile_ms(0.50):>8.1f} "
            f"{tally.percentile_ms(0.99):>8.1f} {tally.error_count:>7}"
        )
    for name, tally in rows:
        print(f"  {name} posts/s per slice: {'  '.join(f'{r:.1f}' for r in tally.slice_rates)}")
    print("  db sessions (share of samples):")
    for name, tally in rows:
        total = sum(tally.sessions.values()) or 1
        top = ", ".join(f"{state} {n / total:.0%}" for state, n in tally.sessions.most_common(5))
        print(f"    {name}: {top}")

    spread, hot, raw = (run.tallies[workload].rate for workload in WORKLOADS)
    for label, ratio, target in (
        ("(b) hot / (a) spread  ", hot / spread if spread else 0.0, TARGET_HOT),
        ("(a) spread / (c) raw  ", spread / raw if raw else 0.0, TARGET_FLOOR),
    ):
        verdict = "PASS" if ratio >= target else "BELOW TARGET"
        print(f"\n{label}= {ratio:.2f}   (target >= {target:.2f})   {verdict}", end="")
    print("\n\ninvariants after the run:")
    for holds, text in checks:
        print(f"  {'ok    ' if holds else 'BROKEN'} {text}")

    errors = sum(tally.error_count for tally in [*run.tallies.values(), *run.warmups.values()])
    broken = sum(1 for holds, _ in checks if not holds)
    if not errors and not broken:
        return 0
    print("\n" + "!" * 78)
    print(f"!!! INVALID RUN: {errors} posting(s) failed, {broken} invariant(s) broken. The figures above do not count.")
    warmups = [(f"{WORKLOADS[workload]} warm-up", tally) for workload, tally in run.warmups.items()]
    for name, tally in [*rows, *warmups]:
        if tally.errors:
            print(f"!!! {name}: {dict(tally.errors)}")
            for sample in tally.samples:
                print(f"!!!   {sample}")
    print("!" * 78)
    return 1


# --- Main -------------------------------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--seconds", type=positive(float), default=15.0, help="load per workload (default 15)")
    parser.add_argument(
        "--workers",
        type=positive(int),
        default=16,
        help="posting processes, two database connections each (default 16)",
    )
    parser.add_argument("--slices", type=positive(int), default=3, help="slices per workload, alternated (default 3)")
    args = parser.parse_args(argv)
    if not bench_ready("bench-ledger", ("DATABASE_URL", "REDIS_URL", "SECRET_KEY")):
        return 2
    warmup = min(2.0, max(0.5, args.seconds / 10))
    workers: Workers | None = None
    try:
        bench_url, maintenance_url, db_name = bench_database_urls(os.environ["DATABASE_URL"], DB_SUFFIX)
        print(f"CPUs: {os.cpu_count()}   python {sys.version.split()[0]}   database: {db_name} (recreated)")
        print(
            f"load: {args.workers} worker processes, {SELLERS} sellers, {args.seconds:g} s per workload in "
            f"{args.slices} alternating slices of {args.seconds / args.slices:g} s, warm-up {warmup:g} s per workload"
        )
        recreate_database(maintenance_url, db_name)
        use_bench_database(bench_url)
        migrate()
        create_sellers()
        with psycopg.connect(bench_url, autocommit=True) as monitor:
            workers = Workers(args.workers, secrets.token_hex(4), monitor)
            run = drive(workers, seconds=args.seconds, slices=args.slices, warmup=warmup)
            workers.stop()
            counted = {workload: run.tallies[workload].done + run.warmups[workload].done for workload in WORKLOADS}
            checks = check_invariants(monitor, counted)
    except (BenchError, psycopg.Error) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        if workers is not None:
            workers.stop()
    return report(run, checks)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
