from __future__ import annotations

from django.db import models


class LedgerCheckRun(models.Model):
    """One run of the ledger's internal checks (DESIGN.md "Reconciliation"), kept so the finance console shows it.

    Written once, after the checks have read their snapshot: a run is never changed afterwards.
    """

    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    ok = models.BooleanField()
    # Every violation found, across all checks; ``violations`` keeps only the first ones (see services).
    violation_count = models.PositiveIntegerField()
    # Per check name: how many violations it found, 0 for a check that passed. Kept whole, so the report can say
    # which checks failed even when their violations did not fit in ``violations``.
    check_counts = models.JSONField(default=dict)
    # [{"check": <name>, "detail": {...}}, ...]: enough for a person to find each broken row.
    violations = models.JSONField(default=list, blank=True)
    actor = models.CharField(max_length=100)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(ok=True, violation_count=0) | models.Q(ok=False, violation_count__gt=0),
                name="ledger_check_run_ok_iff_no_violation",
            ),
        ]
        indexes = [models.Index(fields=["-started_at"], name="ledger_check_run_started_idx")]

    def __str__(self) -> str:
        outcome = "OK" if self.ok else f"{self.violation_count} violation(s)"
        return f"ledger check {self.started_at:%Y-%m-%d %H:%M} UTC: {outcome}"
