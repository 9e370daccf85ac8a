from __future__ import annotations

import logging

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from reconciliation.models import LedgerCheckRun
from reconciliation.selectors import CHECKS, LEDGER_BALANCED, CheckResult, describe_violation

logger = logging.getLogger("reconciliation.ledger_check")

# A run stores at most this many violations (and always their total count): a ledger broken everywhere must not turn
# its run into a row of hundreds of megabytes that the admin then loads.
MAX_VIOLATIONS_KEPT = 1_000
# Each check keeps its own share, so that one check failing everywhere cannot push another's violations out.
KEPT_PER_CHECK = MAX_VIOLATIONS_KEPT // len(CHECKS)
# The ERROR log names the first ones; the stored run holds the rest.
LOGGED_VIOLATIONS = 50

# The first statement of the run's transaction. REPEATABLE READ: the three checks read one snapshot, so a posting
# committed between two of them cannot show as a wallet that differs from its ledger or a pay-in without its order.
# READ ONLY: the checks can never write, whatever a future one does.
_SNAPSHOT = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"

# The checks that may use parallel workers, as many as the server allows. The per-currency sums split across workers
# and merge a few rows (a million journals' entries: 0.84 s alone, 0.55 s with two workers); the wallet and pay-in
# checks run without: each worker built the same per-wallet or per-journal aggregate again, three times the work.
_PARALLEL_CHECKS = {LEDGER_BALANCED}


def ledger_check_run(*, actor: str) -> LedgerCheckRun:
    """Run every ledger check on one snapshot, store the run (what the admin shows) and return it.

    Opens its own transaction (durable: the snapshot's isolation is only set by a transaction's first statement, so
    the checks cannot join a caller's). The run row is written after, in its own transaction, because the checks'
    transaction is read-only. Safe to run twice: each call only reads, and stores its own run.
    """
    started_at = timezone.now()
    results: list[CheckResult] = []
    with transaction.atomic(durable=True):
        with connection.cursor() as cursor:
            cursor.execute(_SNAPSHOT)
            # For this transaction only: each check aggregates whole tables, in memory (see the setting), and none
            # gains from JIT (its compilation took longer than it saved).
            cursor.execute(
                "SELECT set_config('work_mem', %s, true), set_config('jit', 'off', true)",
                [settings.RECONCILIATION_WORK_MEM],
            )
        for name, check in CHECKS.items():
            if any(result.check == name for result in results):
                continue  # answered by an earlier check's query
            with connection.cursor() as cursor:
                cursor.execute(
                    "SET LOCAL max_parallel_workers_per_gather TO " + ("DEFAULT" if name in _PARALLEL_CHECKS else "0")
                )
            found = check(limit=KEPT_PER_CHECK)
            results.extend(found if isinstance(found, list) else [found])
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
