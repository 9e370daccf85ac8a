"""The finance operator also decides orders the risk check held for review."""

from django.contrib.auth.management import create_permissions
from django.db import migrations


def forward(apps, schema_editor):  # type: ignore[no-untyped-def]
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    viewing = Permission.objects.get(content_type__app_label="payments", codename="view_riskreview")
    deciding = Permission.objects.get(content_type__app_label="payments", codename="decide_riskreview")
    for group in Group.objects.filter(name__in=["finance viewer", "finance operator", "finance approver"]):
        group.permissions.add(viewing)
    Group.objects.get(name="finance operator").permissions.add(deciding)


class Migration(migrations.Migration):
    dependencies = [("audit", "0003_finance_groups"), ("payments", "0008_risk_reviews")]

    operations = [migrations.RunPython(forward, migrations.RunPython.noop)]
