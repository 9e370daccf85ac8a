"""Journal transactions by reference alone: the console's search and a payment's page (its postings of every kind).

Built CONCURRENTLY: every posting writes this table, and a plain CREATE INDEX would hold them all for as long as the
build of millions of rows takes.
"""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("ledger", "0005_alter_entry_account"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="journaltransaction",
            index=models.Index(fields=["reference"], name="ledger_journal_reference_idx"),
        ),
    ]
