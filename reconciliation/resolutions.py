"""What finance staff do with findings (the finance console's mismatch queue), as services: the console's pages call
these and nothing else, and each checks the person's permission itself, so least privilege and four eyes hold
whatever page, script or shell calls them.

- resolve a finding with a note (it explains itself; nothing to post);
- propose an adjustment: a balanced posting entered as lines, on existing accounts; a different person with the
  approver's permission approves it (it posts) or rejects it;
- propose a write-off: the finding's difference moved from suspense to the write-offs account, approved the same way;
- retry a finding the run could not settle by itself (its object may have moved since).
Every action is recorded in the audit trail with who, when, what and why, in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from audit.services import audit_record
from ledger.models import Account, AccountType, Side
from ledger.services import AccountRef, Line, accounts_ensure, journal_post, lines_check
from reconciliation.models import Adjustment, AdjustmentStatus, Mismatch, MismatchStatus, SettledItem
from wallets.services import psp_clearing_account, suspense_account

ADJUSTMENT_KIND = "adjustment"
SUSPENSE_RELEASE_KIND = "suspense_release"


class FourEyesViolation(PermissionDenied):
    """The person who proposed an adjustment may not approve it."""


class FindingClosed(Exception):
    """The finding is not open any more: someone else settled it first."""


@dataclass(frozen=True)
class ProposedLine:
    account: str  # an existing account's code
    side: str  # "D" or "C"
    amount: int  # minor units, > 0


def _require(user: Any, permission: str) -> str:
    if not user.is_active or not user.has_perm(permission):
        raise PermissionDenied(f"{user} lacks {permission}")
    return str(user.get_username())


def _open_mismatch(mismatch_id: int) -> Mismatch:
    mismatch = Mismatch.objects.select_for_update().get(pk=mismatch_id)
    if mismatch.status != MismatchStatus.OPEN:
        raise FindingClosed(f"finding #{mismatch_id} is {mismatch.status}")
    return mismatch


def mismatch_resolve(*, mismatch_id: int, user: Any, note: str) -> Mismatch:
    actor = _require(user, "reconciliation.resolve_mismatch")
    if not note.strip():
        raise ValueError("a resolution needs a note saying why")
    with transaction.atomic():
        mismatch = _open_mismatch(mismatch_id)
        mismatch.status, mismatch.resolver, mismatch.note = MismatchStatus.RESOLVED, actor, note.strip()
        mismatch.resolved_at = timezone.now()
        mismatch.save(update_fields=["status", "resolver", "note", "resolved_at"])
        audit_record(
            actor=actor, action="mismatch.resolve", object_type="mismatch", object_id=str(mismatch.pk), reason=note
        )
    return mismatch


def _checked_lines(lines: list[ProposedLine]) -> list[Line]:
    """Lines on existing accounts only (a typo must not open a new account), balanced per currency."""
    accounts = {a.code: a for a in Account.objects.filter(code__in=[line.account for line in lines])}
    unknown = sorted({line.account for line in lines} - set(accounts))
    if unknown:
        raise ValueError(f"no such account: {', '.join(unknown)}")
    checked = [
        Line(
            AccountRef(line.account, AccountType(accounts[line.account].type), accounts[line.account].currency),
            Side(line.side),
            line.amount,
        )
        for line in lines
    ]
    lines_check(checked)
    return checked


def adjustment_propose(
    *,
    user: Any,
    lines: list[ProposedLine],
    memo: str,
    mismatch_id: int | None = None,
    kind: str = Adjustment.Kind.ADJUSTMENT,
) -> Adjustment:
    actor = _require(user, "reconciliation.resolve_mismatch")
    if not memo.strip():
        raise ValueError("an adjustment needs a memo saying why")
    _checked_lines(lines)
    with transaction.atomic():
        if mismatch_id is not None:
            _open_mismatch(mismatch_id)
        adjustment = Adjustment.objects.create(
            mismatch_id=mismatch_id,
            kind=kind,
            lines=[{"account": line.account, "side": line.side, "amount": line.amount} for line in lines],
            memo=memo.strip(),
            proposed_by=actor,
        )
        audit_record(
            actor=actor,
            action="adjustment.propose",
            object_type="adjustment",
            object_id=str(adjustment.pk),
            reason=memo,
            details={"lines": adjustment.lines, "mismatch": mismatch_id},
        )
    return adjustment


def write_off_propose(*, user: Any, mismatch_id: int, memo: str) -> Adjustment:
    """Move the finding's difference out of suspense into write-offs (an expense), once approved."""
    mismatch = Mismatch.objects.get(pk=mismatch_id)
    amount = mismatch.difference if mismatch.difference is not None else mismatch.psp_amount
    if not amount or not mismatch.currency:
        raise ValueError(f"finding #{mismatch_id} has no amount to write off")
    suspense = suspense_account(mismatch.currency)
    write_offs = AccountRef(f"write_offs:{mismatch.currency}", AccountType.EXPENSE, mismatch.currency)
    accounts_ensure(accounts=[suspense, write_offs])
    # Unexplained money the PSP paid (positive) sits as a credit in suspense: debiting suspense clears it.
    first, second = (Side.DEBIT, Side.CREDIT) if amount > 0 else (Side.CREDIT, Side.DEBIT)
    return adjustment_propose(
        user=user,
        lines=[
            ProposedLine(suspense.code, first.value, abs(amount)),
            ProposedLine(write_offs.code, second.value, abs(amount)),
        ],
        memo=memo,
        mismatch_id=mismatch_id,
        kind=Adjustment.Kind.WRITE_OFF,
    )


def adjustment_approve(*, adjustment_id: int, user: Any, note: str = "") -> Adjustment:
    """Post the adjustment. The proposer may not approve it (four eyes), whatever permissions they hold."""
    actor = _require(user, "reconciliation.approve_adjustment")
    with transaction.atomic():
        adjustment = Adjustment.objects.select_for_update().get(pk=adjustment_id)
        if adjustment.status != AdjustmentStatus.PROPOSED:
            raise FindingClosed(f"adjustment #{adjustment_id} is {adjustment.status}")
        if adjustment.proposed_by == actor:
            raise FourEyesViolation("an adjustment is approved by someone other than its proposer")
        lines = _checked_lines([ProposedLine(**line) for line in adjustment.lines])
        posting = journal_post(
            kind=ADJUSTMENT_KIND,
            reference=f"adjustment-{adjustment.pk}",
            lines=lines,
            actor=f"{adjustment.proposed_by}, approved by {actor}",
            memo=adjustment.memo,
        )
        adjustment.status, adjustment.decided_by, adjustment.decided_at = (
            AdjustmentStatus.APPROVED,
            actor,
            timezone.now(),
        )
        adjustment.decision_note, adjustment.journal_id = note, posting.journal_id
        adjustment.save()
        if adjustment.mismatch_id is not None:
            mismatch = _open_mismatch(adjustment.mismatch_id)
            mismatch.status = (
                MismatchStatus.WRITTEN_OFF if adjustment.kind == Adjustment.Kind.WRITE_OFF else MismatchStatus.RESOLVED
            )
            mismatch.resolver, mismatch.note = f"{adjustment.proposed_by} / {actor}", adjustment.memo
            mismatch.resolution_journal_id, mismatch.resolved_at = posting.journal_id, timezone.now()
            mismatch.save()
        audit_record(
            actor=actor,
            action="adjustment.approve",
            object_type="adjustment",
            object_id=str(adjustment.pk),
            reason=note,
            details={"journal": posting.journal_id, "proposed_by": adjustment.proposed_by},
        )
    return adjustment


def adjustment_reject(*, adjustment_id: int, user: Any, note: str) -> Adjustment:
    actor = _require(user, "reconciliation.approve_adjustment")
    if not note.strip():
        raise ValueError("a rejection needs a note saying why")
    with transaction.atomic():
        adjustment = Adjustment.objects.select_for_update().get(pk=adjustment_id)
        if adjustment.status != AdjustmentStatus.PROPOSED:
            raise FindingClosed(f"adjustment #{adjustment_id} is {adjustment.status}")
        if adjustment.proposed_by == actor:
            raise FourEyesViolation("an adjustment is decided by someone other than its proposer")
        adjustment.status, adjustment.decided_by, adjustment.decided_at = (
            AdjustmentStatus.REJECTED,
            actor,
            timezone.now(),
        )
        adjustment.decision_note = note.strip()
        adjustment.save()
        audit_record(
            actor=actor, action="adjustment.reject", object_type="adjustment", object_id=str(adjustment.pk), reason=note
        )
    return adjustment


def mismatch_retry(*, mismatch_id: int, user: Any) -> Mismatch:
    """Run the automatic resolution of a PSP-only finding again (a webhook may have arrived, an order moved). When
    it now settles, its amount leaves suspense (where the day's settlement put it) for PSP clearing."""
    actor = _require(user, "reconciliation.resolve_mismatch")
    from reconciliation.runs import settle_psp_only

    with transaction.atomic():
        mismatch = _open_mismatch(mismatch_id)
        line = mismatch.psp_line
        if not line or mismatch.category not in ("missing_internally", "status_mismatch", "unclassifiable"):
            return mismatch
        row = {
            **line,
            "txn": line["balance_transaction_id"],
            "category": line["reporting_category"],
            "currency": mismatch.currency,
        }
        category, note, accounted = settle_psp_only(row)
        audit_record(
            actor=actor,
            action="mismatch.retry",
            object_type="mismatch",
            object_id=str(mismatch.pk),
            reason=note or category,
        )
        if not accounted:
            return mismatch
        amount = int(mismatch.psp_amount or 0)
        side_suspense, side_clearing = (Side.DEBIT, Side.CREDIT) if amount > 0 else (Side.CREDIT, Side.DEBIT)
        posting = journal_post(
            kind=SUSPENSE_RELEASE_KIND,
            reference=f"mismatch-{mismatch.pk}",
            lines=[
                Line(suspense_account(mismatch.currency), side_suspense, abs(amount)),
                Line(psp_clearing_account(mismatch.currency, mismatch.psp), side_clearing, abs(amount)),
            ],
            actor=actor,
            memo=note or "",
        )
        SettledItem.objects.get_or_create(
            psp=mismatch.psp,
            balance_transaction_id=line["balance_transaction_id"],
            defaults={"category": line["reporting_category"], "key": line["key"], "run": mismatch.run},
        )
        mismatch.status, mismatch.auto, mismatch.resolver = MismatchStatus.RESOLVED, False, actor
        mismatch.category, mismatch.note = category, note or ""
        mismatch.resolution_journal_id, mismatch.resolved_at = posting.journal_id, timezone.now()
        mismatch.save()
    return mismatch
