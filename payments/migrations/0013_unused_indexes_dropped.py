"""Indexes that every payment wrote into and no query read, dropped from the two tables each payment inserts into.

- The ``*_like`` indexes (``varchar_pattern_ops``) that Django adds beside each indexed or unique text column serve
  LIKE 'prefix%' only; every lookup on these columns is by equality (the API, the services, the console's searches,
  which are ``__exact``), which the plain and unique indexes serve.
- The payment's own index on ``client_id``: ``payment_client_created_idx`` starts with that column.

Ten index entries fewer for a payment of two orders, out of twenty-seven (the partial indexes take none at creation).
"""

from django.db import migrations, models

_LIKE_INDEXES = [
    ("payments_paymentevent", "payment_id", "payments_paymentevent_payment_id_1fde19d5_like"),
    ("payments_paymentevent", "checkout_id", "payments_paymentevent_checkout_id_18408e89_like"),
    ("payments_paymentevent", "buyer_id", "payments_paymentevent_buyer_id_67c40f99_like"),
    ("payments_paymentorder", "payment_order_id", "payments_paymentorder_payment_order_id_719fe22b_like"),
    ("payments_paymentorder", "seller_account", "payments_paymentorder_seller_account_2c4ca121_like"),
    ("payments_paymentorder", "status", "payments_paymentorder_status_53dae8f6_like"),
]


def _concurrently(drop: str, create: str) -> migrations.RunSQL:
    return migrations.RunSQL(f"DROP INDEX CONCURRENTLY IF EXISTS {drop}", reverse_sql=create)


class Migration(migrations.Migration):
    # CONCURRENTLY, outside a transaction: a plain DROP INDEX takes an exclusive lock on the table, and payments
    # would queue behind it (as they would behind a plain CREATE INDEX when migrating back).
    atomic = False

    dependencies = [
        ("api", "0002_api_keys"),
        ("payments", "0012_console_filter_indexes"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="paymentevent",
                    name="client",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=models.deletion.PROTECT,
                        related_name="payments",
                        to="api.apiclient",
                    ),
                ),
            ],
            database_operations=[
                _concurrently(
                    "payments_paymentevent_client_id_3f88514e",
                    "CREATE INDEX CONCURRENTLY IF NOT EXISTS payments_paymentevent_client_id_3f88514e"
                    " ON payments_paymentevent (client_id)",
                ),
            ],
        ),
        *(
            _concurrently(
                name,
                f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} ({column} varchar_pattern_ops)",
            )
            for table, column, name in _LIKE_INDEXES
        ),
    ]
