"""The finance console's roles as they stand today: group name → the permissions beyond viewing. Migrations 0003,
0004 and 0006 created them; ``finance_groups_sync`` puts them back exactly (after a test's database flush, or to repair
a group someone edited), and a test holds the migrated groups to this definition."""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission
from django.db.models import Q

VIEWED = {
    "payments": [
        "paymentevent",
        "paymentorder",
        "ordertransition",
        "webhookevent",
        "deadletter",
        "refund",
        "payout",
        "dispute",
        "disputeallocation",
        "riskreview",
    ],
    "ledger": ["account", "journaltransaction", "entry"],
    "wallets": ["seller", "wallet"],
    "reconciliation": ["ledgercheckrun", "reconciliationrun", "mismatch", "adjustment"],
    "audit": ["auditentry", "securityevent"],
}
ROLES = {
    "finance viewer": [],
    "finance operator": [
        "reconciliation.resolve_mismatch",
        "reconciliation.start_run",
        "payments.replay_deadletter",
        "payments.release_funds",
        "payments.trigger_payout",
        "payments.decide_riskreview",
    ],
    "finance approver": ["reconciliation.approve_adjustment"],
}


def role_permissions(role: str) -> set[str]:
    viewing = {f"{app}.view_{model}" for app, models in VIEWED.items() for model in models}
    return viewing | set(ROLES[role])


def finance_groups_sync() -> None:
    for role in ROLES:
        wanted = Q()
        for name in role_permissions(role):
            app, codename = name.split(".")
            wanted |= Q(content_type__app_label=app, codename=codename)
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set(Permission.objects.filter(wanted))
