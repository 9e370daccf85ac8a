"""Every finance role sees the security events: a wave of risk rejections or refused card numbers is theirs to
notice too."""

from django.contrib.auth.management import create_permissions
from django.db import migrations


def forward(apps, schema_editor):  # type: ignore[no-untyped-def]
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    viewing = Permission.objects.get(content_type__app_label="audit", codename="view_securityevent")
    for group in Group.objects.filter(name__in=["finance viewer", "finance operator", "finance approver"]):
        group.permissions.add(viewing)


class Migration(migrations.Migration):
    dependencies = [("audit", "0005_securityevent")]

    operations = [migrations.RunPython(forward, migrations.RunPython.noop)]
