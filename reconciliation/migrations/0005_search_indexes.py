"""Settled items' unique indexes start with the id instead of the PSP: a payment's page finds its items by key, the
console's search by balance transaction, neither knowing the PSP. The runs match on every column, which either order
serves. Only reconciliation runs write this table, so rebuilding the two indexes in one transaction holds nobody else.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("reconciliation", "0004_mismatch_plural"),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="settleditem", name="recon_settled_item_unique"),
        migrations.RemoveConstraint(model_name="settleditem", name="recon_settled_line_unique"),
        migrations.AddConstraint(
            model_name="settleditem",
            constraint=models.UniqueConstraint(fields=("key", "category", "psp"), name="recon_settled_item_unique"),
        ),
        migrations.AddConstraint(
            model_name="settleditem",
            constraint=models.UniqueConstraint(fields=("balance_transaction_id", "psp"), name="recon_settled_line_unique"),
        ),
    ]
