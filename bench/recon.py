"""A settlement reconciliation run at 100k and 1M lines, against the raw floor measured in the same run.

What is measured
    For each size N (``--sizes``, default 100,000 and 1,000,000), on a database of its own:

    - Our books, generated in SQL (INSERT ... SELECT over generate_series): one API client, 1,000 sellers with their
      EUR wallets, N captured payment orders (SUCCESS, ``psp_reference`` pi_..., captured two days before the
      settlement date, with their platform fee), two per payment event, each with its pay-in posting (a journal
      transaction and its three entries), and the wallets' pending balances equal to their accounts; plus the orders
      the injected discrepancies need (below). The generator writes with ``session_replication_role = replica``,
      which switches off the triggers (the ledger's balance check, the wallet projection, the order state machine's
      guards) and foreign key checks for its session only: a million postings through them would take an hour. It
      writes what they would have produced instead (see ``generate``), and the ledger check at the end of the run
      proves it: it must find nothing.
    - The PSP's settlement file: one CSV line per settled charge in the sandbox report's columns
      (psp_sandbox/reports.py ``COLUMNS``; gross, fee and net in decimal major units, the fee 2.9 % + 0.30 rounded
      half up as psp_sandbox/fees.py, ``payment_intent_id`` the order's ``psp_reference``), rendered in SQL and
      streamed to a temporary file, in Stripe's (created, id) order.
    - ``--inject`` (default 1,000) of each discrepancy kind, remembered line by line and item by item in a table of
      the bench database (``bench_expected``): timing (captured within the window, no line), missing at the PSP
      (captured before the window, no line), a small amount difference (half the auto-adjust limit) and a large one
      (50 times it), a fee difference (0.10 more), a duplicate line (a line repeated), missing internally (a line for
      an order still PENDING in our books: the run captures it through ``orders_apply_captures``), a status mismatch
      (a line naming a FAILED order in ``payment_metadata[payment_order_id]``), an unclassifiable line (no key), and
      two kinds of malformed line (4 fields instead of 28; a gross that is not a decimal).

    Then, in a child process (so that its peak RSS is the run's, not the generator's), on a copy of that database:
    ``reconciliation.runs.reconciliation_run(settlement_date=..., stream=open(file, 'rb'))``, timed end to end (wall
    clock: ingest, type, match, the PSP-only lines, persist, the settlement posting and the ledger check), with the
    run's own per-phase timings, the time spent in ``orders_apply_captures`` (the missing-internally captures, in
    one batch) and the ledger check's time. After it, in the same process, on the same database and the same
    file, the raw floor: ``COPY`` of the file's bytes, streamed, into an unlogged table, plus one ``FULL OUTER JOIN``
    of it with the orders on ``payment_intent_id = psp_reference``, materialised with CREATE TABLE AS. The floor's
    table holds each line whole (one text column, split in the join's key): COPY refuses a line with the wrong
    number of fields, and the file has ``--inject`` of those.

How to read it
    Per size: lines, the run's time, the floor's, their ratio, the phases, the process's peak RSS (before the run
    and after it), and precision and recall per category: the run's Mismatch rows (their natural keys) and the lines
    it settled as matched, against what was injected. Malformed lines are not rows: the run counts them and keeps
    the first 100 line numbers; the count must equal what was injected and every kept number must be an injected
    one, and since every other line lands in a row that is checked, that is exact. Then the scaling from the
    smallest size to the largest, and a PASS/MISS line per target:

    - the largest run within 5x its raw floor (the floor measured about 2.5 s at 1M lines on the reference machine);
    - precision and recall 100 % on every injected kind;
    - peak RSS <= 300 MB;
    - t(1M) <= 12 x t(100k) (largest over smallest, for sizes 10x apart).

    Only wrong precision or recall (or a ledger check that finds something: the data would be wrong) makes the run
    exit 1: the time and memory targets are reported, not enforced, because the machines are shared and noisy.
    ``--repeat R`` runs each size R times (each time on a fresh copy of the generated database) and prints the
    median figures.

Database
    ``<name>_bench_recon`` for the ``<name>`` in DATABASE_URL, recreated for each size, migrated and filled; each
    repetition runs on ``<name>_bench_recon_run``, a copy of it (CREATE DATABASE ... TEMPLATE). Both are left in
    place at the end for inspection; the next run replaces them.

Needs DATABASE_URL, REDIS_URL and SECRET_KEY in the environment (``make bench-recon`` provides them). Quick run:
``make bench-recon BENCH_ARGS="--sizes 10000 --inject 100"``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's folder comes first on sys.path, and its files would shadow the apps of the same name
# (bench/ledger.py, bench/api.py). The project's root takes its place (the child process inherits sys.path).
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

DB_SUFFIX = "_bench_recon"
RUN_SUFFIX = "_bench_recon_run"
SELLERS = 1000
CURRENCY = "EUR"
PSP = "stripe"
ACTOR = "bench"
TARGET_FLOOR_RATIO = 5.0
TARGET_RSS_MB = 300.0
TARGET_SCALING = 12.0
# The run's timeout: far above a 1M run; only a hung child reaches it.
CHILD_TIMEOUT = 3600.0
# The run's phases (ReconciliationRun.timings), in the order they run.
PHASES = ("ingest", "type", "match", "psp_only", "persist", "post")

# What the file and our books hold, per injected kind, and where each is counted.
LINE_KINDS = (
    "matched",
    "amount_small",
    "amount_large",
    "fee_difference",
    "duplicate_line",
    "missing_internally",
    "status_mismatch",
    "unclassifiable",
)
ITEM_KINDS = ("timing", "missing_at_psp")
MALFORMED_KINDS = ("malformed_fields", "malformed_amount")
# The captured orders' kinds, by i mod stride (1..6) for the first --inject strides; every other one is matched.
CAPTURED_KINDS = ("timing", "missing_at_psp", "amount_small", "amount_large", "fee_difference", "duplicate_line")
INJECTED_KINDS = (*CAPTURED_KINDS, "missing_internally", "status_mismatch", "unclassifiable", *MALFORMED_KINDS)


# --- Set-up (parent process) ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What one size generates: its numbers, and the rules it generates with (from the settings)."""

    size: int
    inject: int
    settlement_date: date
    platform_fee_percent: Decimal
    platform_fee_fixed: int
    psp_fee_percent: Decimal
    psp_fee_fixed: int
    auto_adjust_limit: int  # minor units

    @property
    def stride(self) -> int:
        return self.size // self.inject

    def parameters(self) -> dict[str, Any]:
        from django.conf import settings

        day_end = datetime.combine(self.settlement_date, datetime.min.time(), tzinfo=UTC) + timedelta(days=1)
        cutoff = day_end - timedelta(days=settings.PSP_SETTLEMENT_DELAY_DAYS)
        window_start = cutoff - timedelta(days=settings.RECONCILIATION_TIMING_WINDOW_DAYS)
        return {
            "n": self.size,
            "k": self.inject,
            "stride": self.stride,
            "sellers": SELLERS,
            "currency": CURRENCY,
            "kinds": list(CAPTURED_KINDS),
            # Captured within the day before the cutoff: expected in this file (timing when its line is absent).
            "captured_day": cutoff - timedelta(days=1),
            # Captured before the timing window: missing at the PSP when its line is absent.
            "old_day": window_start - timedelta(days=2),
            "available_on": datetime.combine(self.settlement_date, datetime.min.time(), tzinfo=UTC),
            "fee_percent": self.platform_fee_percent,
            "fee_fixed": self.platform_fee_fixed,
            "psp_fee_percent": self.psp_fee_percent,
            "psp_fee_fixed": self.psp_fee_fixed,
            "small": max(1, self.auto_adjust_limit // 2),
            "large": self.auto_adjust_limit * 50,
            "actor": ACTOR,
        }

    @classmethod
    def from_settings(cls, size: int, inject: int, settlement_date: date) -> Plan:
        from django.conf import settings

        from ledger.money import to_minor

        limit = settings.RECONCILIATION_AUTO_ADJUST_LIMIT.get(CURRENCY, settings.RECONCILIATION_AUTO_ADJUST_DEFAULT)
        return cls(
            size=size,
            inject=inject,
            settlement_date=settlement_date,
            platform_fee_percent=settings.PLATFORM_FEE_PERCENT_BY_CURRENCY.get(CURRENCY, settings.PLATFORM_FEE_PERCENT),
            platform_fee_fixed=int(settings.PLATFORM_FEE_FIXED.get(CURRENCY, 0)),
            psp_fee_percent=Decimal(settings.PSP_FEE_PERCENT),
            psp_fee_fixed=int(settings.PSP_FEE_FIXED),
            auto_adjust_limit=to_minor(Decimal(limit), CURRENCY),
        )


# One row per order of ours: i in 1..n captured (SUCCESS), n+1..n+k PENDING (their lines are missing internally),
# n+k+1..n+2k FAILED (their lines are status mismatches). Amounts 5.00 to 1004.99 EUR. Fees by the one rounding rule
# of each (wallets/fees.py, psp_sandbox/fees.py): the percentage rounded half up (numeric round() rounds half away
# from zero: the same for positive amounts), plus the fixed part, at most the gross.
PLAN = """
CREATE UNLOGGED TABLE bench_plan AS
SELECT i, kind, gross,
       least(gross, round(gross * %(fee_percent)s / 100) + %(fee_fixed)s)::bigint AS platform_fee,
       least(gross, round(gross * %(psp_fee_percent)s / 100) + %(psp_fee_fixed)s)::bigint AS psp_fee,
       CASE kind WHEN 'missing_internally' THEN 'PENDING' WHEN 'status_mismatch' THEN 'FAILED' ELSE 'SUCCESS' END
           AS status,
       CASE WHEN kind = 'missing_at_psp' THEN %(old_day)s::timestamptz ELSE %(captured_day)s::timestamptz END
           + make_interval(secs => mod(i, 86400)) AS created,
       'po_' || lpad(i::text, 9, '0') AS payment_order_id,
       'pi_' || left(md5('pi' || i), 24) AS psp_reference,
       'txn_' || left(md5('txn' || i), 24) AS txn,
       'ch_' || left(md5('ch' || i), 24) AS charge,
       'seller_' || mod(i, %(sellers)s) AS seller,
       (i + 1) / 2 AS event
FROM (
    SELECT i,
           CASE WHEN i > %(n)s + %(k)s THEN 'status_mismatch'
                WHEN i > %(n)s THEN 'missing_internally'
                WHEN i / %(stride)s < %(k)s AND mod(i, %(stride)s) BETWEEN 1 AND 6
                    THEN (%(kinds)s::text[])[mod(i, %(stride)s)]
                ELSE 'matched' END AS kind,
           500 + mod(i::bigint * 7919, 100000)::int AS gross
    FROM generate_series(1, %(n)s + 2 * %(k)s) AS i
) p
"""

# Ids are given explicitly (a fresh database: every sequence is at 1), and the sequences moved past them after.
# Accounts: 1 PSP clearing, 2 platform fees, then four per seller (pending, available, reserved, held).
OUR_BOOKS = [
    """
    INSERT INTO api_apiclient (id, name) VALUES (1, 'bench_recon')
    """,
    """
    INSERT INTO wallets_seller (id, account, display_name)
    SELECT j + 1, 'seller_' || j, '' FROM generate_series(0, %(sellers)s - 1) AS j
    """,
    """
    INSERT INTO ledger_account (id, code, type, currency)
    VALUES (1, 'psp_clearing:stripe:' || %(currency)s, 'asset', %(currency)s),
           (2, 'platform_fees:' || %(currency)s, 'revenue', %(currency)s)
    """,
    """
    INSERT INTO ledger_account (id, code, type, currency)
    SELECT 3 + j * 4 + b, 'seller_' || bucket || ':seller_' || j || ':' || %(currency)s, 'liability', %(currency)s
    FROM generate_series(0, %(sellers)s - 1) AS j,
         unnest(ARRAY['pending', 'available', 'reserved', 'held']) WITH ORDINALITY AS buckets(bucket, b1),
         LATERAL (SELECT b1 - 1 AS b) AS b
    """,
    # The wallet projection's trigger is off: the wallets get what it would have added up, their pending funds.
    """
    INSERT INTO wallets_wallet (id, seller_account, currency, pending)
    SELECT j + 1, 'seller_' || j, %(currency)s,
           coalesce(shares.pending, 0)
    FROM generate_series(0, %(sellers)s - 1) AS j
    LEFT JOIN (SELECT seller, sum(gross - platform_fee) AS pending FROM bench_plan WHERE status = 'SUCCESS'
               GROUP BY seller) shares ON shares.seller = 'seller_' || j
    """,
    """
    INSERT INTO wallets_walletaccount (account_id, wallet_id, bucket)
    SELECT 3 + j * 4 + b, j + 1, (ARRAY['pending', 'available', 'reserved', 'held'])[b + 1]
    FROM generate_series(0, %(sellers)s - 1) AS j, generate_series(0, 3) AS b
    """,
    """
    INSERT INTO payments_paymentevent (id, payment_id, client_id, checkout_id, buyer_id, payment_method_token,
                                       created_at, updated_at)
    SELECT e, 'pay_' || left(md5('pay' || e), 24), 1, 'chk_' || e, 'buyer_' || mod(e, 5000), 'pm_card_visa',
           created, created
    FROM (SELECT event AS e, min(created) AS created FROM bench_plan GROUP BY event) events
    """,
    # The state machine's guards are off: orders are written as they stand after it, with what it would have set.
    """
    INSERT INTO payments_paymentorder (id, payment_order_id, event_id, position, seller_account, amount,
                                       amount_currency, status, psp_reference, attempts, captured_at, platform_fee,
                                       failure_code, created_at, updated_at)
    SELECT i, payment_order_id, event, mod(i + 1, 2), seller, gross / 100.0, %(currency)s, status, psp_reference, 1,
           CASE WHEN status = 'SUCCESS' THEN created END, CASE WHEN status = 'SUCCESS' THEN platform_fee END,
           CASE WHEN status = 'FAILED' THEN 'card_declined' ELSE '' END,
           created - interval '1 second', created
    FROM bench_plan
    """,
    # The pay-in postings, as wallets.services.payin_post writes them: journal i for order i.
    """
    INSERT INTO ledger_journaltransaction (id, kind, reference, effective_at, memo, actor, created_at)
    SELECT i, 'payin', payment_order_id, created, '', %(actor)s, created
    FROM bench_plan WHERE status = 'SUCCESS'
    """,
    """
    INSERT INTO ledger_entry (journal_id, account_id, side, amount, currency, effective_at)
    SELECT p.i, line.account_id, line.side, line.amount, %(currency)s, p.created
    FROM bench_plan p,
         LATERAL (VALUES (1, 'D', p.gross),
                         (3 + mod(p.i, %(sellers)s) * 4, 'C', p.gross - p.platform_fee),
                         (2, 'C', p.platform_fee)) AS line(account_id, side, amount)
    WHERE p.status = 'SUCCESS'
    ORDER BY p.i, line.account_id
    """,
]

SEQUENCES = [
    ("api_apiclient", "id"),
    ("wallets_seller", "id"),
    ("ledger_account", "id"),
    ("wallets_wallet", "id"),
    ("payments_paymentevent", "id"),
    ("payments_paymentorder", "id"),
    ("ledger_journaltransaction", "id"),
]

# The settlement file's lines, rendered whole in SQL: one charge line per order that has one (timing and missing at
# the PSP have none; a duplicate has two), plus the lines no order of ours explains. No field holds a comma, a quote
# or a line break, so no field needs CSV quoting.
LINES = """
CREATE UNLOGGED TABLE bench_lines AS
WITH facts AS (
    SELECT CASE WHEN p.kind = 'duplicate_line' AND copy = 1 THEN 'matched' ELSE p.kind END AS kind,
           p.txn, p.created, p.charge, p.psp_reference AS intent, p.payment_order_id AS order_id,
           (p.gross + CASE p.kind WHEN 'amount_small' THEN %(small)s WHEN 'amount_large' THEN %(large)s ELSE 0 END)
               AS gross,
           p.psp_fee + CASE p.kind WHEN 'fee_difference' THEN 10 ELSE 0 END AS fee,
           copy
    FROM bench_plan p,
         generate_series(1, CASE p.kind WHEN 'duplicate_line' THEN 2 ELSE 1 END) AS copy
    WHERE p.kind NOT IN ('timing', 'missing_at_psp')
    UNION ALL
    SELECT kind, 'txn_' || left(md5(kind || u), 24), %(captured_day)s::timestamptz
               + make_interval(secs => mod(u * 7919, 86400)),
           'ch_' || left(md5('ch' || kind || u), 24),
           CASE kind WHEN 'unclassifiable' THEN '' ELSE 'pi_' || left(md5('pi' || kind || u), 24) END,
           '', 1000 + u, least(1000 + u, round((1000 + u) * %(psp_fee_percent)s / 100) + %(psp_fee_fixed)s), 1
    FROM generate_series(1, %(k)s) AS u,
         unnest(ARRAY['unclassifiable', 'malformed_fields', 'malformed_amount']) AS kind
), rendered AS (
    SELECT kind, txn, created, copy,
           CASE WHEN kind = 'malformed_fields' THEN concat_ws(',', txn, to_char(created, 'YYYY-MM-DD HH24:MI:SS'),
                                                             lower(%(currency)s), 'broken')
           ELSE concat_ws(',',
               txn,
               to_char(created, 'YYYY-MM-DD HH24:MI:SS'),
               to_char(created, 'YYYY-MM-DD HH24:MI:SS'),
               to_char(%(available_on)s::timestamptz, 'YYYY-MM-DD HH24:MI:SS'),
               to_char(%(available_on)s::timestamptz, 'YYYY-MM-DD HH24:MI:SS'),
               lower(%(currency)s),
               CASE WHEN kind = 'malformed_amount' THEN 'n/a' ELSE (gross / 100.0)::numeric(18, 2)::text END,
               (fee / 100.0)::numeric(18, 2)::text,
               ((gross - fee) / 100.0)::numeric(18, 2)::text,
               'charge',
               charge,
               'bench charge',
               (gross / 100.0)::numeric(18, 2)::text,
               lower(%(currency)s),
               'po_' || to_char(%(available_on)s::timestamptz, 'YYYYMMDD'),
               to_char(%(available_on)s::timestamptz, 'YYYY-MM-DD HH24:MI:SS'),
               charge,
               intent,
               to_char(created, 'YYYY-MM-DD HH24:MI:SS'),
               'card', 'visa', 'DE',
               '',
               order_id,
               '', '', '', '')
           END AS line
    FROM facts
)
SELECT row_number() OVER (ORDER BY created, txn, copy) + 1 AS line_no, kind, txn, copy, line
FROM rendered
"""

EXPECTED = """
CREATE TABLE bench_expected AS
SELECT kind,
       CASE WHEN kind LIKE 'malformed%' THEN NULL WHEN copy > 1 THEN 'line:' || txn || '#' || copy
            ELSE 'line:' || txn END AS natural_key,
       line_no
FROM bench_lines
UNION ALL
SELECT kind, 'item:charge:' || psp_reference, NULL FROM bench_plan WHERE kind IN ('timing', 'missing_at_psp')
"""


def generate(url: str, plan: Plan) -> None:
    """Our books for ``plan``, in one transaction, with the triggers off for this session only."""
    params = plan.parameters()
    with psycopg.connect(url) as conn:
        # Bypasses every trigger, the foreign keys' included, in this session: see the module's docstring. What the
        # triggers would have written (the wallets' balances) is written directly, and the run's ledger check
        # verifies the result.
        conn.execute("SET session_replication_role = replica")
        conn.execute(PLAN, params)
        for statement in OUR_BOOKS:
            conn.execute(statement, params)
        for table, column in SEQUENCES:
            conn.execute(
                sql.SQL("SELECT setval(pg_get_serial_sequence({}, {}), (SELECT max({}) FROM {}))").format(
                    sql.Literal(table), sql.Literal(column), sql.Identifier(column), sql.Identifier(table)
                )
            )
        conn.execute(LINES, params)
        conn.execute(EXPECTED)
        conn.execute("SET session_replication_role = DEFAULT")
        conn.commit()
        _check_fees(conn)
    # A database that has settled after its load, as autovacuum leaves it: statistics, visibility map, and no dirty
    # buffers of the load left for the run to write out.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")


def _check_fees(conn: psycopg.Connection[Any]) -> None:
    """The SQL fee rules against the project's and the sandbox's own helpers, on a sample."""
    from django.conf import settings

    from psp_sandbox.fees import fee_split
    from wallets.fees import platform_fee

    rows = conn.execute(
        "SELECT gross, platform_fee, psp_fee FROM bench_plan WHERE mod(i, 997) = 0 OR mod(gross, 1000) = 500"
    ).fetchall()
    for gross, fee, psp_fee in rows:
        expected_psp, _ = fee_split(gross, percent=Decimal(settings.PSP_FEE_PERCENT), fixed=settings.PSP_FEE_FIXED)
        if (fee, psp_fee) != (platform_fee(gross, CURRENCY), expected_psp):
            raise BenchError(f"generator's fees differ from the project's for {gross}: {fee}, {psp_fee}")


def write_file(url: str, path: Path) -> tuple[int, int]:
    """The settlement file, streamed from the database to ``path``: (lines after the header, bytes)."""
    from psp_sandbox.reports import COLUMNS

    size = 0
    with psycopg.connect(url) as conn, path.open("wb") as out:
        header = (",".join(COLUMNS) + "\n").encode()
        out.write(header)
        size += len(header)
        with conn.cursor().copy("COPY (SELECT line FROM bench_lines ORDER BY line_no) TO STDOUT") as copy:
            for chunk in copy:
                out.write(chunk)
                size += len(chunk)
        row = conn.execute("SELECT count(*) FROM bench_lines").fetchone()
        assert row is not None
        conn.execute("DROP TABLE bench_lines")
        conn.commit()
    return int(row[0]), size


def clone_database(maintenance_url: str, template: str, name: str) -> None:
    with psycopg.connect(maintenance_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )


# --- The run and the floor (child process) ----------------------------------------------------------------------------


def peak_rss_mb() -> float:
    # ru_maxrss is in kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


FLOOR_STAGE = "CREATE UNLOGGED TABLE bench_floor_stage (line text)"
# One field per line: a delimiter and a quote character that never occur in the file.
FLOOR_COPY = "COPY bench_floor_stage (line) FROM STDIN (FORMAT csv, HEADER, DELIMITER E'\\x01', QUOTE E'\\x02')"
FLOOR_JOIN = """
CREATE UNLOGGED TABLE bench_floor_join AS
SELECT s.line, o.id AS order_id, o.amount
FROM bench_floor_stage s
FULL OUTER JOIN payments_paymentorder o ON o.psp_reference = split_part(s.line, ',', %(field)s)
"""


def floor_measure(url: str, path: Path) -> tuple[float, int]:
    """COPY of the file plus one FULL OUTER JOIN with the orders: (seconds, rows joined)."""
    from psp_sandbox.reports import COLUMNS

    with psycopg.connect(url) as conn:
        for table in ("bench_floor_join", "bench_floor_stage"):
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
        conn.commit()
        started = time.perf_counter()
        conn.execute(FLOOR_STAGE)
        with conn.cursor().copy(FLOOR_COPY) as copy, path.open("rb") as stream:
            while chunk := stream.read(1 << 16):
                copy.write(chunk)
        conn.execute(FLOOR_JOIN, {"field": COLUMNS.index("payment_intent_id") + 1})
        conn.commit()
        seconds = time.perf_counter() - started
        row = conn.execute("SELECT count(*) FROM bench_floor_join").fetchone()
        assert row is not None
    return seconds, int(row[0])


def child_main(url: str, settlement_date: date, path: str, pipe: Connection) -> None:
    """Run the reconciliation on ``url``, then the floor; send the figures to the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        use_bench_database(url)
        import django

        django.setup()
        from reconciliation import runs

        rss_before = peak_rss_mb()
        # The missing-internally captures run in a batch through the payments service: timed on their own.
        applied = {"calls": 0, "seconds": 0.0}
        apply_result = runs.orders_apply_captures

        def timed_apply_result(**kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return apply_result(**kwargs)
            finally:
                applied["calls"] += 1
                applied["seconds"] += time.perf_counter() - started

        runs.orders_apply_captures = timed_apply_result  # type: ignore[assignment]
        started = time.perf_counter()
        with Path(path).open("rb") as stream:
            run = runs.reconciliation_run(
                settlement_date=settlement_date, psp=PSP, stream=stream, file_name=Path(path).name
            )
        seconds = time.perf_counter() - started
        rss_after = peak_rss_mb()
        check = run.ledger_check
        from django.db import connection

        connection.close()
        floor_seconds, floor_rows = floor_measure(url, Path(path))
        pipe.send(
            {
                "run_id": run.pk,
                "status": run.status,
                "seconds": seconds,
                "timings": run.timings,
                "counts": run.counts,
                "lines_total": run.lines_total,
                "lines_malformed": run.lines_malformed,
                "malformed": run.malformed,
                "psp_clearing": run.psp_clearing,
                "ledger_check_ok": check.ok if check else None,
                "ledger_check_seconds": (check.finished_at - check.started_at).total_seconds() if check else None,
                "ledger_check_counts": check.check_counts if check else {},
                "ledger_check_violations": check.violations[:5] if check else [],
                "applied": applied,
                "rss_before": rss_before,
                "rss_after": rss_after,
                "floor_seconds": floor_seconds,
                "floor_rows": floor_rows,
            }
        )
    except Exception as exc:  # reported to the parent, which stops
        pipe.send({"failed": f"{type(exc).__name__}: {exc}"})


def run_in_child(url: str, settlement_date: date, path: Path) -> dict[str, Any]:
    # spawn: a fresh interpreter, so the peak RSS it reports is the run's, not the generator's.
    context = multiprocessing.get_context("spawn")
    parent_end, child_end = context.Pipe()
    process = context.Process(target=child_main, args=(url, settlement_date, str(path), child_end))
    process.start()
    child_end.close()
    try:
        if not parent_end.poll(CHILD_TIMEOUT):
            raise BenchError(f"the run did not finish within {CHILD_TIMEOUT:.0f} s")
        try:
            answer: dict[str, Any] = parent_end.recv()
        except EOFError:
            raise BenchError(f"the run's process exited (code {process.exitcode})") from None
    finally:
        process.join(timeout=30)
        if process.is_alive():
            process.terminate()
            process.join()
    if "failed" in answer:
        raise BenchError(f"the run failed: {answer['failed']}")
    return answer


# --- Precision and recall (parent process) ----------------------------------------------------------------------------

# What the run found, by the bench's kinds: its findings, and the lines it settled without one (matched). A duplicate
# line's finding is keyed by the balance transaction it repeats and its copy's number (line:<txn>#2).
PREDICTED = """
WITH predicted AS (
    SELECT CASE WHEN m.category = 'amount_difference'
                THEN CASE WHEN m.status = 'auto_resolved' THEN 'amount_small' ELSE 'amount_large' END
                ELSE m.category END AS kind,
           m.natural_key
    FROM reconciliation_mismatch m
    WHERE m.run_id = %(run)s
    UNION ALL
    SELECT 'matched', 'line:' || s.balance_transaction_id
    FROM reconciliation_settleditem s
    WHERE s.run_id = %(run)s AND NOT EXISTS (
        SELECT 1 FROM reconciliation_mismatch m
        WHERE m.run_id = %(run)s AND m.natural_key = 'line:' || s.balance_transaction_id
    )
), expected AS (
    SELECT kind, natural_key FROM bench_expected WHERE natural_key IS NOT NULL
)
SELECT coalesce(p.kind, e.kind) AS kind,
       count(*) FILTER (WHERE p.kind IS NOT NULL AND e.kind IS NOT NULL) AS true_positive,
       count(*) FILTER (WHERE e.kind IS NULL) AS false_positive,
       count(*) FILTER (WHERE p.kind IS NULL) AS false_negative,
       (array_agg(coalesce(p.natural_key, e.natural_key) ORDER BY coalesce(p.natural_key, e.natural_key))
           FILTER (WHERE p.kind IS NULL OR e.kind IS NULL))[1:3] AS examples
FROM predicted p
FULL OUTER JOIN expected e ON e.kind = p.kind AND e.natural_key = p.natural_key
GROUP BY 1
"""


@dataclass
class Score:
    kind: str
    injected: int
    found: int
    true_positive: int
    examples: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.true_positive / self.found if self.found else (1.0 if not self.injected else 0.0)

    @property
    def recall(self) -> float:
        return self.true_positive / self.injected if self.injected else 1.0

    @property
    def exact(self) -> bool:
        return self.true_positive == self.injected == self.found


def score(url: str, result: dict[str, Any]) -> list[Score]:
    scores: dict[str, Score] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        # The run has just written these tables: without statistics the comparison below is planned as a nested loop.
        conn.execute("ANALYZE reconciliation_mismatch, reconciliation_settleditem")
        for kind, tp, fp, fn, examples in conn.execute(PREDICTED, {"run": result["run_id"]}).fetchall():
            scores[kind] = Score(kind, injected=tp + fn, found=tp + fp, true_positive=tp, examples=examples or [])
        malformed = dict(
            conn.execute(
                "SELECT kind, array_agg(line_no) FROM bench_expected WHERE kind LIKE 'malformed%' GROUP BY kind"
            ).fetchall()
        )
        row = conn.execute(
            "SELECT count(*) FROM payments_paymentorder o JOIN bench_plan p ON p.i = o.id"
            " WHERE p.kind = 'missing_internally' AND o.status <> 'SUCCESS'"
        ).fetchone()
        assert row is not None
        still_pending = int(row[0])
    # Malformed lines: the run counts them and keeps the first line numbers. Every other line is in a row scored
    # above, so a right count with every kept number an injected one (and nothing else wrong) is exact.
    injected_lines = {line for lines in malformed.values() for line in lines}
    kept = [int(item["line"]) for item in result["malformed"]]
    stray = [line for line in kept if line not in injected_lines]
    right = result["lines_malformed"] - len(stray) if result["lines_malformed"] == len(injected_lines) else 0
    scores["malformed"] = Score(
        "malformed",
        injected=len(injected_lines),
        found=result["lines_malformed"],
        true_positive=min(right, len(injected_lines)),
        examples=[f"line {line}" for line in stray[:3]],
    )
    if still_pending:
        scores["missing_internally"].true_positive -= still_pending
        scores["missing_internally"].examples.append(f"{still_pending} order(s) not captured")
    order = [*LINE_KINDS, *ITEM_KINDS, "malformed"]
    return sorted(scores.values(), key=lambda s: order.index(s.kind) if s.kind in order else len(order))


# --- Report -----------------------------------------------------------------------------------------------------------


@dataclass
class Measure:
    size: int
    lines: int
    file_bytes: int
    results: list[dict[str, Any]]  # one per repetition
    scores: list[list[Score]]

    def median(self, key: str) -> float:
        return statistics.median(float(result[key]) for result in self.results)

    @property
    def ratio(self) -> float:
        return self.median("seconds") / self.median("floor_seconds")

    @property
    def peak_rss(self) -> float:
        return max(result["rss_after"] for result in self.results)


def print_repetition(index: int, repeat: int, result: dict[str, Any], scores: list[Score]) -> None:
    timings = result["timings"]
    applied = result["applied"]
    phases = ", ".join(f"{phase} {timings[phase]:.2f}" for phase in PHASES if phase in timings)
    print(
        f"  [{index}/{repeat}] run {result['seconds']:.2f} s   floor {result['floor_seconds']:.2f} s   "
        f"ratio {result['seconds'] / result['floor_seconds']:.1f}   peak RSS {result['rss_after']:.0f} MB "
        f"(before the run {result['rss_before']:.0f} MB)"
    )
    print(
        f"        phases (s): {phases}; of psp_only, orders_apply_captures {applied['seconds']:.2f} "
        f"({applied['calls']} calls); ledger check {result['ledger_check_seconds']:.2f}"
    )
    print(
        f"        run: {result['status']}, {result['lines_total']:,} lines, {result['lines_malformed']:,} malformed; "
        f"ledger check {'ok' if result['ledger_check_ok'] else 'FOUND VIOLATIONS'}; PSP clearing difference "
        + ", ".join(f"{cur} {check['difference']}" for cur, check in sorted(result["psp_clearing"].items()))
    )
    if not result["ledger_check_ok"]:
        print(f"        ledger check: {result['ledger_check_counts']} {result['ledger_check_violations']}")
    wrong = [s for s in scores if not s.exact]
    if index == 1 or wrong:
        print(f"        {'category':<20} {'injected':>9} {'found':>9} {'precision':>10} {'recall':>8}")
        for s in scores:
            flag = "" if s.exact else f"   WRONG {', '.join(s.examples)}"
            print(f"        {s.kind:<20} {s.injected:>9,} {s.found:>9,} {s.precision:>10.2%} {s.recall:>8.2%}{flag}")


def report(measures: list[Measure]) -> int:
    print(f"\n{'size':>10} {'lines':>10} {'run s':>8} {'floor s':>8} {'ratio':>6} {'peak RSS':>9}  phases (median s)")
    for m in measures:
        phases = {phase: statistics.median(r["timings"].get(phase, 0.0) for r in m.results) for phase in PHASES}
        phases["ledger_check"] = m.median("ledger_check_seconds")
        text = ", ".join(f"{phase} {seconds:.2f}" for phase, seconds in phases.items())
        print(
            f"{m.size:>10,} {m.lines:>10,} {m.median('seconds'):>8.2f} {m.median('floor_seconds'):>8.2f} "
            f"{m.ratio:>6.1f} {m.peak_rss:>6.0f} MB  {text}"
        )
    largest, smallest = measures[-1], measures[0]
    verdicts: list[tuple[bool, str]] = [
        (
            largest.ratio <= TARGET_FLOOR_RATIO,
            f"{largest.size:,} run / raw floor = {largest.ratio:.1f} (target <= {TARGET_FLOOR_RATIO:g})",
        ),
        (
            max(m.peak_rss for m in measures) <= TARGET_RSS_MB,
            f"peak RSS {max(m.peak_rss for m in measures):.0f} MB (target <= {TARGET_RSS_MB:g} MB)",
        ),
    ]
    if len(measures) > 1:
        scaling = largest.median("seconds") / smallest.median("seconds")
        factor = largest.size / smallest.size
        target = TARGET_SCALING * factor / 10
        print(
            f"\nscaling {smallest.size:,} -> {largest.size:,} ({factor:g}x the lines): "
            f"t = {smallest.median('seconds'):.2f} s -> {largest.median('seconds'):.2f} s, {scaling:.1f}x "
            f"(floor {largest.median('floor_seconds') / smallest.median('floor_seconds'):.1f}x)"
        )
        verdicts.append(
            (scaling <= target, f"scaling {scaling:.1f}x for {factor:g}x the lines (target <= {target:g}x)")
        )
    wrong = [(m.size, s) for m in measures for scores in m.scores for s in scores if not s.exact]
    checks_failed = [m.size for m in measures for r in m.results if not r["ledger_check_ok"]]
    verdicts.append((not wrong, "precision and recall 100 % on every injected kind"))
    print("\ntargets (time and memory are reported, not enforced: the machines are shared and noisy):")
    for passed, text in verdicts:
        print(f"  {'PASS' if passed else 'MISS'}  {text}")
    if wrong or checks_failed:
        print("\n" + "!" * 78)
        for size, s in wrong:
            print(
                f"!!! {size:,}: {s.kind}: injected {s.injected}, found {s.found}, right {s.true_positive}: {s.examples}"
            )
        for size in checks_failed:
            print(f"!!! {size:,}: the ledger check found violations: the generated books are wrong")
        print("!" * 78)
        return 1
    return 0


# --- Main -------------------------------------------------------------------------------------------------------------


def sizes(text: str) -> list[int]:
    try:
        values = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"a comma-separated list of line counts, not {text!r}") from None
    if not values or any(value <= 0 for value in values):
        raise argparse.ArgumentTypeError(f"positive line counts, not {text!r}")
    return sorted(values)


def measure_size(size: int, args: argparse.Namespace, maintenance_url: str, urls: dict[str, str]) -> Measure:
    import django

    settlement_date = datetime.now(UTC).date()
    recreate_database(maintenance_url, urls["name"])
    use_bench_database(urls["url"])
    migrate()
    django.setup()
    plan = Plan.from_settings(size, args.inject, settlement_date)
    print(f"\nsize {size:,}: generating our books and the settlement file ({args.inject:,} of each discrepancy)")
    started = time.perf_counter()
    generate(urls["url"], plan)
    with tempfile.TemporaryDirectory(prefix="bench_recon_") as folder:
        path = Path(folder) / f"settlement_{settlement_date}.csv"
        lines, file_bytes = write_file(urls["url"], path)
        print(
            f"  generated in {time.perf_counter() - started:.0f} s: {size + 2 * args.inject:,} orders of ours, "
            f"{lines:,} lines in the file ({file_bytes / 2**20:.1f} MB)"
        )
        results, all_scores = [], []
        for index in range(1, args.repeat + 1):
            clone_database(maintenance_url, urls["name"], urls["run_name"])
            result = run_in_child(urls["run_url"], settlement_date, path)
            scores = score(urls["run_url"], result)
            print_repetition(index, args.repeat, result, scores)
            results.append(result)
            all_scores.append(scores)
    return Measure(size, lines, file_bytes, results, all_scores)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument(
        "--sizes", type=sizes, default=[100_000, 1_000_000], help="lines per run, comma-separated (100000,1000000)"
    )
    parser.add_argument("--inject", type=positive(int), default=1000, help="discrepancies of each kind (1000)")
    parser.add_argument("--repeat", type=positive(int), default=1, help="runs per size, median reported (1)")
    args = parser.parse_args(argv)
    too_small = [size for size in args.sizes if size // args.inject < 8]
    if too_small:
        parser.error(f"each size needs at least 8 x --inject lines: {too_small}")
    if not bench_ready("bench-recon", ("DATABASE_URL", "REDIS_URL", "SECRET_KEY")):
        return 2
    try:
        url, maintenance_url, name = bench_database_urls(os.environ["DATABASE_URL"], DB_SUFFIX)
        run_url, _, run_name = bench_database_urls(os.environ["DATABASE_URL"], RUN_SUFFIX)
        urls = {"url": url, "name": name, "run_url": run_url, "run_name": run_name}
        print(f"CPUs: {os.cpu_count()}   python {sys.version.split()[0]}   databases: {name}, {run_name} (recreated)")
        print(
            f"sizes: {', '.join(f'{size:,}' for size in args.sizes)}; {args.inject:,} of each discrepancy kind; "
            f"{args.repeat} run(s) per size"
        )
        measures = [measure_size(size, args, maintenance_url, urls) for size in args.sizes]
    except (BenchError, psycopg.Error) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return report(measures)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
