"""Webhook events by event id alone: the console's search, and a replay (webhook_event_retry).

The unique index on (psp, event_id) becomes (event_id, psp): the webhook endpoint's ON CONFLICT (psp, event_id) infers
it whatever the column order. The inbox takes every webhook, so nothing here holds its writes: the new index is built
CONCURRENTLY, and the constraint then moves to it in one quick ALTER.
"""

from django.db import migrations, models

FORWARD = [
    "CREATE UNIQUE INDEX CONCURRENTLY webhook_event_unique_new ON payments_webhookevent (event_id, psp)",
    "ALTER TABLE payments_webhookevent DROP CONSTRAINT webhook_event_unique, "
    "ADD CONSTRAINT webhook_event_unique UNIQUE USING INDEX webhook_event_unique_new",
]
BACKWARD = [
    "CREATE UNIQUE INDEX CONCURRENTLY webhook_event_unique_old ON payments_webhookevent (psp, event_id)",
    "ALTER TABLE payments_webhookevent DROP CONSTRAINT webhook_event_unique, "
    "ADD CONSTRAINT webhook_event_unique UNIQUE USING INDEX webhook_event_unique_old",
]


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("payments", "0010_search_indexes"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(FORWARD, BACKWARD)],
            state_operations=[
                migrations.RemoveConstraint(model_name="webhookevent", name="webhook_event_unique"),
                migrations.AddConstraint(
                    model_name="webhookevent",
                    constraint=models.UniqueConstraint(fields=("event_id", "psp"), name="webhook_event_unique"),
                ),
            ],
        ),
    ]
