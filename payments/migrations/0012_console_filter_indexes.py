"""The finance console's filters by a webhook event's PSP and type and by a payout's currencies: each filter lists its
choices by walking the column's index (api/readonly_admin.py, IndexedValuesFilter) and filters on it.

Built CONCURRENTLY: webhooks arrive all the time, and a plain CREATE INDEX would hold them for as long as the build
over millions of events takes.
"""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("payments", "0011_webhook_event_by_event_id"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="payout",
            index=models.Index(fields=["currency"], name="payout_currency_idx"),
        ),
        AddIndexConcurrently(
            model_name="payout",
            index=models.Index(fields=["payout_currency"], name="payout_payout_currency_idx"),
        ),
        AddIndexConcurrently(
            model_name="webhookevent",
            index=models.Index(fields=["psp"], name="webhook_event_psp_idx"),
        ),
        AddIndexConcurrently(
            model_name="webhookevent",
            index=models.Index(fields=["type"], name="webhook_event_type_idx"),
        ),
    ]
