"""Refunds and payouts by the PSP's id (re_, tr_): the console's search. Built CONCURRENTLY, so that refunds and
payouts go on being written while it builds."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("payments", "0009_metrics_window_indexes"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="payout",
            index=models.Index(
                condition=~models.Q(psp_reference=""), fields=["psp_reference"], name="payout_psp_reference_idx"
            ),
        ),
        AddIndexConcurrently(
            model_name="refund",
            index=models.Index(
                condition=~models.Q(psp_reference=""), fields=["psp_reference"], name="refund_psp_reference_idx"
            ),
        ),
    ]
