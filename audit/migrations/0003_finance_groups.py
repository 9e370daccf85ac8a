"""The finance console's roles, least privilege (the finance console issue, section 1):

- finance viewer: reads every finance page, changes nothing;
- finance operator: also resolves findings and proposes adjustments, replays dead letters, starts reconciliation
  runs, releases funds, triggers payouts;
- finance approver: also approves (or rejects) adjustments someone else proposed.

Nobody gets add, change or delete on money rows: the console acts through services, which check these permissions.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

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
    ],
    "ledger": ["account", "journaltransaction", "entry"],
    "wallets": ["seller", "wallet"],
    "reconciliation": ["ledgercheckrun", "reconciliationrun", "mismatch", "adjustment"],
    "audit": ["auditentry"],
}
OPERATOR = [
    ("reconciliation", "resolve_mismatch"),
    ("reconciliation", "start_run"),
    ("payments", "replay_deadletter"),
    ("payments", "release_funds"),
    ("payments", "trigger_payout"),
]
APPROVER = [("reconciliation", "approve_adjustment")]
GROUPS = {
    "finance viewer": [],
    "finance operator": OPERATOR,
    "finance approver": APPROVER,
}


def forward(apps, schema_editor):  # type: ignore[no-untyped-def]
    # Permissions are normally created after all migrations; the groups need them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    viewing = [
        Permission.objects.get(content_type__app_label=app, codename=f"view_{model}")
        for app, models in VIEWED.items()
        for model in models
    ]
    for name, extra in GROUPS.items():
        group, _ = Group.objects.get_or_create(name=name)
        acting = [Permission.objects.get(content_type__app_label=app, codename=codename) for app, codename in extra]
        group.permissions.set([*viewing, *acting])


def backward(apps, schema_editor):  # type: ignore[no-untyped-def]
    apps.get_model("auth", "Group").objects.filter(name__in=GROUPS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0002_append_only"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("payments", "0006_alter_deadletter_options_alter_paymentorder_options_and_more"),
        ("reconciliation", "0003_alter_mismatch_options_and_more"),
        ("ledger", "0005_alter_entry_account"),
        ("wallets", "0007_seller_payout_account"),
    ]

    operations = [migrations.RunPython(forward, backward)]
