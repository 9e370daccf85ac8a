from __future__ import annotations

import logging
import threading
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from reconciliation.models import LedgerCheckRun
from reconciliation.selectors import (
    CHECKS,
    LEDGER_BALANCED,
    PAYIN_AMOUNTS_MATCH_ORDERS,
    PAYINS_MATCH_ORDERS,
    CheckResult,
    describe_violation,
)

logger = logging.getLogger("reconciliation.ledger_check")

# A run stores at most this many violations (and always their total count): a ledger broken everywhere must not turn
# its run into a row of hundreds of megabytes that the admin then loads.
MAX_VIOLATIONS_KEPT = 1_000
# Each check keeps its own share, so that one check failing everywhere cannot push another's violations out.
KEPT_PER_CHECK = MAX_VIOLATIONS_KEPT // len(CHECKS)
# The ERROR log names the first ones; the stored run holds the rest.
LOGGED_VIOLATIONS = 50

# The first statement of each lane's transaction. REPEATABLE READ: every check, in either lane, reads one snapshot, so a
# posting committed between two of them cannot show as a wallet that differs from its ledger or a pay-in without its
# order. READ ONLY: the checks can never write, whatever a future one does.
_SNAPSHOT = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"

# The checks that may use parallel workers, as many as the server allows. The per-currency sums split across workers
# and merge a few rows (a million journals' entries: 0.84 s alone, 0.55 s with two workers); the wallet and pay-in
# checks run without: each worker built the same per-wallet or per-journal aggregate again, three times the work.
_PARALLEL_CHECKS = {LEDGER_BALANCED}

# The checks the calling thread runs: the two pay-in checks (one query over every pay-in and order, the longest by
# far). The others run in the helper lane, which is then the shorter: a failure in this lane waits for it no longer
# than those checks take.
_FIRST_LANE = {PAYINS_MATCH_ORDERS, PAYIN_AMOUNTS_MATCH_ORDERS}


def ledger_check_run(*, actor: str) -> LedgerCheckRun:
    """Run every ledger check on one snapshot, store the run (what the admin shows) and return it.

    Opens its own transactions (durable: the snapshot's isolation is only set by a transaction's first statement, so
    the checks cannot join a caller's). The checks run in two lanes, each on its own connection, one in a helper
    thread: the pay-in checks, the longest, in one and the others in the other, so that a nightly check takes both
    of a machine's cores instead of one. The first lane exports its snapshot and the second imports it (``SET
    TRANSACTION SNAPSHOT``, as ``pg_dump --jobs`` does), so both read the same committed ledger. The run row is
    written after, in its own transaction, because the checks' transactions are read-only. Safe to run twice: each
    call only reads, and stores its own run.
    """
    started_at = timezone.now()
    found: dict[str, CheckResult] = {}
    with transaction.atomic(durable=True):
        # The helper adopts this transaction's snapshot: it must stay open until the helper has joined.
        helper = _LaneThread([name for name in CHECKS if name not in _FIRST_LANE], _snapshot_export())
        helper.start()
        try:
            found.update(_lane_run([name for name in CHECKS if name in _FIRST_LANE]))
        except BaseException:
            helper.join()
            if helper.error is not None:
                logger.error("ledger check: the helper lane failed too", exc_info=helper.error)
            raise
        helper.join()
        if helper.error is not None:
            raise helper.error
        found.update(helper.found)
    results = [found[name] for name in CHECKS if name in found]
    finished_at = timezone.now()

    count = sum(result.count for result in results)
    run = LedgerCheckRun.objects.create(
        started_at=started_at,
        finished_at=finished_at,
        ok=count == 0,
        violation_count=count,
        check_counts={result.check: result.count for result in results},
        violations=[violation for result in results for violation in result.violations],
        actor=actor,
    )
    if run.ok:
        logger.info("ledger check run #%s: OK (%s)", run.pk, actor)
        return run
    shown = run.violations[:LOGGED_VIOLATIONS]
    lines = "\n".join(f"  [{violation['check']}] {describe_violation(violation)}" for violation in shown)
    more = count - len(shown)
    logger.error(
        "ledger check run #%s (%s) found %d violation(s):\n%s%s",
        run.pk,
        actor,
        count,
        lines,
        f"\n  ... and {more} more: see ledger check run #{run.pk} in the admin" if more else "",
    )
    return run


def _snapshot_export() -> str:
    """Begin the first lane's transaction and return its snapshot's id, for the helper lane to adopt."""
    with connection.cursor() as cursor:
        cursor.execute(_SNAPSHOT)
        _check_settings(cursor)
        cursor.execute("SELECT pg_export_snapshot()")
        return str(cursor.fetchone()[0])


def _snapshot_adopt(snapshot: str) -> None:
    """Begin the helper lane's transaction on the first lane's snapshot."""
    with connection.cursor() as cursor:
        cursor.execute(_SNAPSHOT)
        # Only before the transaction's first query, and only while the exporting transaction is still open. Bound
        # client-side (Django's default cursor): a SET takes no server-side parameter.
        cursor.execute("SET TRANSACTION SNAPSHOT %s", [snapshot])
        _check_settings(cursor)


def _check_settings(cursor: Any) -> None:
    # For this transaction only: each check aggregates whole tables, in memory (see the setting; each lane has its
    # own), and none gains from JIT (its compilation took longer than it saved).
    cursor.execute(
        "SELECT set_config('work_mem', %s, true), set_config('jit', 'off', true)",
        [settings.RECONCILIATION_WORK_MEM],
    )


def _lane_run(names: list[str]) -> dict[str, CheckResult]:
    """Run these checks, in this order, in the open transaction: each check's result by its name."""
    found: dict[str, CheckResult] = {}
    for name in names:
        if name in found:
            continue  # answered by an earlier check's query
        with connection.cursor() as cursor:
            cursor.execute(
                "SET LOCAL max_parallel_workers_per_gather TO " + ("DEFAULT" if name in _PARALLEL_CHECKS else "0")
            )
        result = CHECKS[name](limit=KEPT_PER_CHECK)
        found.update((each.check, each) for each in (result if isinstance(result, list) else [result]))
    return found


class _LaneThread(threading.Thread):
    """The helper lane: its checks in a transaction of its own connection, on the first lane's snapshot."""

    def __init__(self, names: list[str], snapshot: str) -> None:
        # A daemon: a process told to stop does not wait on a check whose result nobody will store.
        super().__init__(name="ledger-check-lane", daemon=True)
        self.names, self.snapshot = names, snapshot
        self.found: dict[str, CheckResult] = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with transaction.atomic(durable=True):
                _snapshot_adopt(self.snapshot)
                self.found = _lane_run(self.names)
        except BaseException as exc:  # handed to the calling thread, which raises it
            self.error = exc
        finally:
            connection.close()  # this thread's own connection: nothing else would close it
