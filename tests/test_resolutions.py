"""The finance console's services for findings: roles, four eyes (in the service and in PostgreSQL), the audit
trail, and postings that balance."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, connection, transaction
from django.test import Client

from audit.models import AuditEntry
from audit.selectors import audit_entries_for
from ledger.selectors import account_balances
from reconciliation.models import Adjustment, AdjustmentStatus, Mismatch, MismatchStatus
from reconciliation.resolutions import (
    FindingClosed,
    FourEyesViolation,
    ProposedLine,
    adjustment_approve,
    adjustment_propose,
    adjustment_reject,
    mismatch_resolve,
    write_off_propose,
)
from tests.conftest import unplaced_finding

pytestmark = pytest.mark.django_db


def person(name: str, *groups: str) -> User:
    user = User.objects.create_user(name, password="pw-for-tests-only", is_staff=True)
    user.groups.set(Group.objects.filter(name__in=groups))
    return User.objects.get(pk=user.pk)  # permissions are cached per instance


@pytest.fixture
def finding() -> Mismatch:
    return unplaced_finding("txn_1")


def test_the_three_roles_exist_with_least_privilege() -> None:
    viewer, operator, approver = (
        person("v", "finance viewer"),
        person("o", "finance operator"),
        person("a", "finance approver"),
    )
    for user in (viewer, operator, approver):
        assert user.has_perm("payments.view_paymentevent")
        assert user.has_perm("ledger.view_entry")
        assert not user.has_perm("ledger.change_entry")
        assert not user.has_perm("payments.change_paymentorder")
        assert not user.has_perm("audit.delete_auditentry")
    assert not viewer.has_perm("reconciliation.resolve_mismatch")
    assert operator.has_perm("reconciliation.resolve_mismatch")
    assert operator.has_perm("payments.replay_deadletter")
    assert not operator.has_perm("reconciliation.approve_adjustment")
    assert approver.has_perm("reconciliation.approve_adjustment")
    assert not approver.has_perm("reconciliation.resolve_mismatch")


def test_a_viewer_cannot_act_and_a_resolution_needs_a_note(finding: Mismatch) -> None:
    with pytest.raises(PermissionDenied):
        mismatch_resolve(mismatch_id=finding.pk, user=person("v", "finance viewer"), note="looked at it")
    with pytest.raises(ValueError, match="note"):
        mismatch_resolve(mismatch_id=finding.pk, user=person("o", "finance operator"), note="  ")

    finding.refresh_from_db()
    assert finding.status == MismatchStatus.OPEN
    assert not AuditEntry.objects.exists()


def test_a_resolution_is_recorded_with_who_and_why_and_only_once(finding: Mismatch) -> None:
    operator = person("o", "finance operator")

    mismatch_resolve(mismatch_id=finding.pk, user=operator, note="a test charge of the PSP's own")
    with pytest.raises(FindingClosed):
        mismatch_resolve(mismatch_id=finding.pk, user=operator, note="again")

    finding.refresh_from_db()
    assert (finding.status, finding.resolver) == (MismatchStatus.RESOLVED, "o")
    trail = list(audit_entries_for(object_type="mismatch", object_id=str(finding.pk)))
    assert [(e.actor, e.action, e.reason) for e in trail] == [
        ("o", "mismatch.resolve", "a test charge of the PSP's own")
    ]


def test_four_eyes_the_proposer_cannot_approve_even_with_both_roles(finding: Mismatch) -> None:
    both = person("b", "finance operator", "finance approver")
    adjustment = write_off_propose(user=both, mismatch_id=finding.pk, memo="below the investigation threshold")

    with pytest.raises(FourEyesViolation):
        adjustment_approve(adjustment_id=adjustment.pk, user=both)
    with pytest.raises(PermissionDenied):
        adjustment_approve(adjustment_id=adjustment.pk, user=person("o2", "finance operator"))
    assert account_balances(codes=["suspense:EUR"])["suspense:EUR"] == -250

    approved = adjustment_approve(adjustment_id=adjustment.pk, user=person("a", "finance approver"), note="agreed")

    assert (approved.status, approved.decided_by) == (AdjustmentStatus.APPROVED, "a")
    finding.refresh_from_db()
    assert finding.status == MismatchStatus.WRITTEN_OFF
    assert finding.resolution_journal_id == approved.journal_id
    balances = account_balances(codes=["suspense:EUR", "write_offs:EUR"])
    # Money received that nobody could place, written off: a gain, so the write-offs (expense) account goes below zero.
    assert balances == {"suspense:EUR": 0, "write_offs:EUR": -250}
    assert [e.action for e in AuditEntry.objects.order_by("pk")] == ["adjustment.propose", "adjustment.approve"]


def test_the_database_refuses_an_adjustment_decided_by_its_proposer(finding: Mismatch) -> None:
    adjustment = write_off_propose(user=person("o", "finance operator"), mismatch_id=finding.pk, memo="small")
    with pytest.raises(IntegrityError, match="recon_adjustment_four_eyes"), transaction.atomic():
        Adjustment.objects.filter(pk=adjustment.pk).update(status="approved", decided_by="o")


def test_an_adjustment_must_balance_on_existing_accounts_and_a_rejection_posts_nothing(finding: Mismatch) -> None:
    operator, approver = person("o", "finance operator"), person("a", "finance approver")
    with pytest.raises(ValueError, match="no such account"):
        adjustment_propose(
            user=operator, memo="typo", lines=[ProposedLine("bank:EUR", "D", 1), ProposedLine("bnak:EUR", "C", 1)]
        )
    with pytest.raises(Exception, match="balance"):
        adjustment_propose(
            user=operator, memo="off", lines=[ProposedLine("bank:EUR", "D", 2), ProposedLine("suspense:EUR", "C", 1)]
        )
    adjustment = adjustment_propose(
        user=operator,
        memo="bank fee",
        mismatch_id=finding.pk,
        lines=[ProposedLine("suspense:EUR", "D", 250), ProposedLine("bank:EUR", "C", 250)],
    )

    adjustment_reject(adjustment_id=adjustment.pk, user=approver, note="not a bank fee")

    adjustment.refresh_from_db()
    assert (adjustment.status, adjustment.journal_id) == (AdjustmentStatus.REJECTED, None)
    finding.refresh_from_db()
    assert finding.status == MismatchStatus.OPEN
    assert account_balances(codes=["suspense:EUR"])["suspense:EUR"] == -250


def test_the_audit_trail_is_append_only(finding: Mismatch) -> None:
    mismatch_resolve(mismatch_id=finding.pk, user=person("o", "finance operator"), note="why")
    for statement in ("UPDATE audit_auditentry SET actor = 'someone else'", "DELETE FROM audit_auditentry"):
        with pytest.raises(Exception, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement)
    assert AuditEntry.objects.get().actor == "o"


def admin_as(user: User) -> Any:
    client = Client()
    client.force_login(user)
    return client


def test_the_console_resolves_proposes_and_approves_through_the_services(finding: Mismatch) -> None:
    operator, approver = person("o", "finance operator"), person("a", "finance approver")
    viewer = person("v", "finance viewer")
    changelist = "/admin/reconciliation/mismatch/"

    # a viewer sees the queue but no action that changes anything
    page = admin_as(viewer).get(changelist)
    assert page.status_code == 200
    assert b"Resolve with a note" not in page.content
    assert b"Resolve with a note" in admin_as(operator).get(changelist).content

    # the operator proposes a write-off, with the note the form asks for first
    form = admin_as(operator).post(changelist, {"action": "propose_write_off", "_selected_action": [finding.pk]})
    assert b"Why: kept on the record." in form.content
    done = admin_as(operator).post(
        changelist,
        {"action": "propose_write_off", "_selected_action": [finding.pk], "apply": "1", "note": "PSP test line"},
    )
    assert done.status_code == 302
    adjustment = Adjustment.objects.get()

    # the proposer cannot approve through the console either; the approver can
    adjustments = "/admin/reconciliation/adjustment/"
    both = person("b", "finance operator", "finance approver")
    own = write_off_propose(user=both, mismatch_id=finding.pk, memo="mine")
    refused = admin_as(both).post(
        adjustments, {"action": "approve", "_selected_action": [own.pk], "apply": "1", "note": "ok"}, follow=True
    )
    assert b"approved by someone other than its proposer" in refused.content
    admin_as(approver).post(
        adjustments, {"action": "approve", "_selected_action": [adjustment.pk], "apply": "1", "note": "ok"}
    )

    adjustment.refresh_from_db()
    assert adjustment.status == AdjustmentStatus.APPROVED
    finding.refresh_from_db()
    assert finding.status == MismatchStatus.WRITTEN_OFF
    shown = admin_as(viewer).get(f"/admin/reconciliation/adjustment/{adjustment.pk}/change/").content.decode()
    assert "o · adjustment.propose · PSP test line" in shown
    assert "a · adjustment.approve · ok" in shown


def test_ledger_pages_trial_balance_account_as_of_and_the_runs_chart(finding: Mismatch) -> None:
    from ledger.models import Account

    viewer = admin_as(person("v", "finance viewer"))

    now = viewer.get("/admin/ledger/account/trial-balance/").content.decode()
    before = viewer.get("/admin/ledger/account/trial-balance/", {"as_of": "2000-01-01T00:00"}).content.decode()
    suspense = Account.objects.get(code="suspense:EUR")
    account_page = viewer.get(f"/admin/ledger/account/{suspense.pk}/change/").content.decode()
    then_page = viewer.get(
        f"/admin/ledger/account/{suspense.pk}/change/", {"as_of": "2000-01-01T00:00"}
    ).content.decode()
    entries = viewer.get("/admin/ledger/entry/", {"account__code__exact": "suspense:EUR"}).content.decode()
    runs = viewer.get("/admin/reconciliation/reconciliationrun/").content.decode()

    assert "bank:EUR" in now
    assert "EUR — balanced" in now
    assert "Trial balance as of 2000-01-01 00:00 UTC" in before
    assert "250" not in before
    assert "-250 now" in account_page
    assert "0 as of 2000-01-01 00:00 UTC" in then_page
    assert "suspense:EUR" in entries
    assert "bank:EUR" not in entries  # one account's entries only
    assert "Findings per night" in runs
    assert f"?run__id__exact={finding.run_id}" in runs


def test_the_demo_data_has_one_person_per_finance_role(settings: Any, tmp_path: Any) -> None:
    import json as json_module
    from io import StringIO

    from django.core.management import call_command

    settings.BASE_DIR = tmp_path  # the command keeps its generated secrets under BASE_DIR/var
    out = StringIO()
    call_command("seed_demo", "--json", stdout=out)

    printed = json_module.loads(out.getvalue())
    roles = {u.username: list(u.groups.values_list("name", flat=True)) for u in User.objects.filter(is_superuser=False)}
    assert roles == {
        "finance": ["finance viewer"],
        "operator": ["finance operator"],
        "approver": ["finance approver"],
    }
    assert {user["username"] for user in printed["users"]} == {"admin", "finance", "operator", "approver"}


def test_the_queue_filters_by_age_and_amount(finding: Mismatch) -> None:
    from datetime import timedelta

    from django.utils import timezone

    old = Mismatch.objects.create(
        psp="stripe",
        natural_key="line:txn_2",
        run=finding.run,
        category="amount_difference",
        currency="EUR",
        psp_amount=100_000,
        our_amount=50_000,
        difference=50_000,
        reference="txn_2",
    )
    Mismatch.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))
    viewer = admin_as(person("v", "finance viewer"))

    def listed(**params: str) -> set[str]:
        page = viewer.get("/admin/reconciliation/mismatch/", params).content.decode()
        return {ref for ref in ("txn_1", "txn_2") if f">{ref}<" in page}

    assert listed() == {"txn_1", "txn_2"}
    assert listed(age="day") == {"txn_1"}
    assert listed(age="older") == {"txn_2"}
    assert listed(amount="medium") == {"txn_1"}
    assert listed(amount="large") == {"txn_2"}


def test_the_migrated_groups_are_the_roles_as_defined() -> None:
    from audit.roles import ROLES, role_permissions

    for role in ROLES:
        group = Group.objects.get(name=role)
        held = {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}
        assert held == role_permissions(role), role
