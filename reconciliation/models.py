from __future__ import annotations

from django.contrib.postgres.indexes import HashIndex
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


class RunStatus(models.TextChoices):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class Category(models.TextChoices):
    """What a settlement line, or one of our items, turned out to be (DESIGN.md "Reconciliation")."""

    MATCHED = "matched"
    TIMING = "timing"  # ours only, still within the window: carried to the next run
    AMOUNT_DIFFERENCE = "amount_difference"
    MISSING_INTERNALLY = "missing_internally"  # the PSP's only (a lost webhook)
    MISSING_AT_PSP = "missing_at_psp"  # ours only, past the window
    STATUS_MISMATCH = "status_mismatch"
    FEE_DIFFERENCE = "fee_difference"
    DUPLICATE_LINE = "duplicate_line"
    UNCLASSIFIABLE = "unclassifiable"


class ReconciliationRun(models.Model):
    """The reconciliation of one PSP's settlement file for one date. One per (PSP, date): running a date again
    is another attempt of the same run, which changes nothing already settled or resolved by a person."""

    psp = models.CharField(max_length=32)
    settlement_date = models.DateField()
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.RUNNING)
    source = models.CharField(max_length=10)  # "psp" (fetched) or "upload"
    file_name = models.CharField(max_length=255, blank=True, default="")
    file_checksum = models.CharField(max_length=64, blank=True, default="")  # sha256 of the bytes read
    attempts = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    lines_total = models.PositiveIntegerField(default=0)
    lines_malformed = models.PositiveIntegerField(default=0)
    malformed = models.JSONField(default=list, blank=True)  # the first ones: [{"line": n, "error": "..."}]
    counts = models.JSONField(default=dict, blank=True)  # {category: lines or items}
    amounts = models.JSONField(default=dict, blank=True)  # {category: {currency: minor units}}
    psp_clearing = models.JSONField(default=dict, blank=True)  # {currency: {"ledger", "outstanding", "difference"}}
    timings = models.JSONField(default=dict, blank=True)  # seconds per phase
    ledger_check = models.ForeignKey(LedgerCheckRun, on_delete=models.PROTECT, null=True, blank=True)
    error = models.TextField(blank=True, default="")
    actor = models.CharField(max_length=100, blank=True, default="")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["psp", "settlement_date"], name="recon_run_one_per_date")]
        indexes = [models.Index(fields=["-settlement_date"], name="recon_run_date_idx")]
        permissions = [("start_run", "Can start a reconciliation run or upload a settlement file")]

    def __str__(self) -> str:
        return f"{self.psp} {self.settlement_date} ({self.status})"


class SettledItem(models.Model):
    """One of our items (a charge, refund, transfer, dispute movement) that a settlement line accounted for, so no
    later run matches or expects it again."""

    # An item is settled once: the primary key (key, category, psp) is what keeps two runs, even concurrent ones,
    # from relieving PSP clearing twice for one item. The key first: a payment's page looks its items up by key, not
    # knowing the PSP or category, and a run inserts its items in key order, so the index takes them a leaf after
    # the other. No surrogate id beside it: nothing refers to a settled item, and a third index, a million entries a
    # night, was a third of the run's settling time.
    pk = models.CompositePrimaryKey("key", "category", "psp")
    psp = models.CharField(max_length=32)
    category = models.CharField(max_length=32)
    # Ids, compared byte by byte: every key a run inserts in its primary key (a million a night) is placed
    # by a dozen comparisons, each a memcmp in the "C" collation instead of a call into the locale's (a database
    # created as en_US or C.UTF-8 uses strcoll, and disables PostgreSQL's abbreviated sort keys): a fifth of the
    # run's settling time. Equality is the same in every deterministic collation, so no lookup changes.
    key = models.CharField(max_length=255, db_collation="C")
    balance_transaction_id = models.CharField(max_length=255, db_collation="C")
    # The run that settled it. No database foreign key: only a run writes these rows, a million on a busy night, each
    # naming that run, whose row it holds locked (FOR UPDATE), and runs are never deleted (the console is read-only,
    # PROTECT in the ORM); the key's check, a query per row at commit, cost a run seconds and guarded nothing.
    run = models.ForeignKey(
        ReconciliationRun, on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False
    )

    class Meta:
        # A balance transaction is looked up by equality only (a run drops the lines settled before, the console
        # searches by it), through a hash index. A run inserts its items in key order, so the key's B-tree takes
        # them a leaf after the other; a second B-tree, on the balance transaction, took the same million entries
        # at random all over it, over half the settling time. Its uniqueness guarded nothing the run does not:
        # a line settled before leaves the run by its balance transaction, a line repeated within a file is a
        # duplicate, and a line settles an item, which the primary key allows once.
        indexes = [HashIndex(fields=["balance_transaction_id"], name="recon_settled_line_idx")]

    def __str__(self) -> str:
        return f"{self.category} {self.key}"


class MismatchStatus(models.TextChoices):
    OPEN = "open"
    AUTO_RESOLVED = "auto_resolved"
    RESOLVED = "resolved"
    WRITTEN_OFF = "written_off"


class Mismatch(models.Model):
    """A finding for a person, or one the run settled itself: the finance console's queue. Keyed by what it is
    about, so a run repeated finds its own findings again instead of adding copies, and never reopens one a person
    resolved."""

    psp = models.CharField(max_length=32)
    natural_key = models.CharField(max_length=300)  # category:balance transaction or our item
    run = models.ForeignKey(ReconciliationRun, on_delete=models.PROTECT, related_name="mismatches")
    last_run = models.ForeignKey(ReconciliationRun, on_delete=models.PROTECT, related_name="+", null=True)
    category = models.CharField(max_length=32, choices=Category.choices)
    status = models.CharField(max_length=16, choices=MismatchStatus.choices, default=MismatchStatus.OPEN)
    auto = models.BooleanField(default=False)  # settled by the run itself
    currency = models.CharField(max_length=3, blank=True, default="")
    psp_amount = models.BigIntegerField(null=True, blank=True)  # minor units, as the line says
    our_amount = models.BigIntegerField(null=True, blank=True)
    difference = models.BigIntegerField(null=True, blank=True)  # psp - ours
    psp_line = models.JSONField(null=True, blank=True)  # the settlement line, as read
    ours = models.JSONField(null=True, blank=True)  # our item: category, key, orders...
    reference = models.CharField(max_length=255, blank=True, default="", db_index=True)  # pi_/re_/tr_/dp_ or ours
    resolver = models.CharField(max_length=150, blank=True, default="")
    note = models.TextField(blank=True, default="")
    resolution_journal = models.ForeignKey(
        "ledger.JournalTransaction", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["psp", "natural_key"], name="recon_mismatch_unique"),
            models.CheckConstraint(condition=models.Q(category__in=Category.values), name="recon_mismatch_category"),
        ]
        indexes = [
            models.Index(fields=["status", "category"], name="recon_mismatch_queue_idx"),
        ]
        verbose_name_plural = "mismatches"
        permissions = [("resolve_mismatch", "Can resolve a finding, propose an adjustment or a write-off")]

    def __str__(self) -> str:
        return f"{self.category} {self.reference} ({self.status})"


class AdjustmentStatus(models.TextChoices):
    PROPOSED = "proposed"
    APPROVED = "approved"  # posted
    REJECTED = "rejected"


class Adjustment(models.Model):
    """A correcting ledger posting a person proposes and a different person approves before it posts (four eyes:
    reconciliation/resolutions.py refuses the proposer as approver, and so does PostgreSQL). A write-off is one too:
    a difference moved from suspense to the write-offs account."""

    class Kind(models.TextChoices):
        ADJUSTMENT = "adjustment"
        WRITE_OFF = "write_off"

    mismatch = models.ForeignKey(Mismatch, on_delete=models.PROTECT, null=True, blank=True, related_name="adjustments")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.ADJUSTMENT)
    # [{"account": code, "side": "D" | "C", "amount": minor units}], balanced per currency, existing accounts only.
    lines = models.JSONField()
    memo = models.TextField()
    status = models.CharField(max_length=10, choices=AdjustmentStatus.choices, default=AdjustmentStatus.PROPOSED)
    proposed_by = models.CharField(max_length=150)
    proposed_at = models.DateTimeField(auto_now_add=True)
    decided_by = models.CharField(max_length=150, blank=True, default="")
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.TextField(blank=True, default="")
    journal = models.ForeignKey(
        "ledger.JournalTransaction", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status="proposed") | ~models.Q(decided_by=models.F("proposed_by")),
                name="recon_adjustment_four_eyes",
            ),
            models.CheckConstraint(condition=~models.Q(memo=""), name="recon_adjustment_has_memo"),
        ]
        permissions = [("approve_adjustment", "Can approve an adjustment proposed by someone else")]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} ({self.status})"
