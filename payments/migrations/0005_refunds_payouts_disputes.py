"""Refunds, payouts and disputes; and the order state machine's edges for a refund that fails after it was booked
(the guard of migration 0002, with three more edges: PARTIALLY_REFUNDED → SUCCESS, REFUNDED → SUCCESS and
REFUNDED → PARTIALLY_REFUNDED)."""

import django.db.models.deletion
import django.db.models.expressions
import django.db.models.functions.datetime
import django_fsm
import payments.models.payouts
import payments.models.refunds
import importlib

from django.db import migrations, models


_GUARD = importlib.import_module("payments.migrations.0002_status_guards")

ALLOWED_EDGES = [
    *_GUARD.ALLOWED_EDGES,
    ("PARTIALLY_REFUNDED", "SUCCESS"),
    ("REFUNDED", "SUCCESS"),
    ("REFUNDED", "PARTIALLY_REFUNDED"),
]


def _guard(edges: list[tuple[str, str]]) -> str:
    listed = ", ".join(f"('{source}', '{target}')" for source, target in edges)
    return f"""
CREATE OR REPLACE FUNCTION payments_order_status_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (OLD.status, NEW.status) NOT IN ({listed}) THEN
        RAISE EXCEPTION 'payment order %: % -> % is not a transition of the order state machine',
            OLD.payment_order_id, OLD.status, NEW.status
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0004_dead_letters"),
        ("wallets", "0006_wallet_held_and_seller_debt"),
    ]

    operations = [
        migrations.CreateModel(
            name="Dispute",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("psp_dispute_id", models.CharField(max_length=255, unique=True)),
                ("payment_intent", models.CharField(db_index=True, max_length=255)),
                ("amount", models.BigIntegerField()),
                ("currency", models.CharField(max_length=3)),
                ("fee", models.BigIntegerField()),
                ("reason", models.CharField(blank=True, db_default="", default="", max_length=100)),
                (
                    "status",
                    models.CharField(
                        choices=[("OPEN", "Open"), ("WON", "Won"), ("LOST", "Lost")], default="OPEN", max_length=10
                    ),
                ),
                ("opened_at", models.DateTimeField(db_default=django.db.models.functions.datetime.Now())),
                ("closed_at", models.DateTimeField(blank=True, null=True)),
            ],
        ),
        migrations.CreateModel(
            name="DisputeAllocation",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("amount", models.BigIntegerField()),
                ("seller_from_pending", models.BigIntegerField()),
                ("seller_from_available", models.BigIntegerField()),
                ("platform_fee_part", models.BigIntegerField()),
            ],
        ),
        migrations.CreateModel(
            name="Payout",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "payout_id",
                    models.CharField(
                        default=payments.models.payouts._new_payout_id, editable=False, max_length=40, unique=True
                    ),
                ),
                ("currency", models.CharField(max_length=3)),
                ("amount", models.BigIntegerField()),
                ("payout_currency", models.CharField(max_length=3)),
                ("payout_amount", models.BigIntegerField()),
                ("fx_rate", models.DecimalField(blank=True, decimal_places=10, max_digits=20, null=True)),
                ("destination", models.CharField(blank=True, db_default="", default="", max_length=255)),
                (
                    "status",
                    django_fsm.FSMField(
                        choices=[
                            ("NOT_STARTED", "Not Started"),
                            ("EXECUTING", "Executing"),
                            ("UNKNOWN", "Unknown"),
                            ("PAID", "Paid"),
                            ("FAILED", "Failed"),
                        ],
                        default="NOT_STARTED",
                        max_length=50,
                        protected=True,
                    ),
                ),
                ("psp_reference", models.CharField(blank=True, db_default="", default="", max_length=255)),
                ("failure_code", models.CharField(blank=True, db_default="", default="", max_length=100)),
                ("failure_reason", models.TextField(blank=True, db_default="", default="")),
                ("attempts", models.PositiveIntegerField(db_default=0, default=0)),
                ("actor", models.CharField(max_length=100)),
                ("created_at", models.DateTimeField(db_default=django.db.models.functions.datetime.Now())),
                (
                    "updated_at",
                    models.DateTimeField(auto_now=True, db_default=django.db.models.functions.datetime.Now()),
                ),
                ("paid_at", models.DateTimeField(blank=True, null=True)),
            ],
            bases=(django_fsm.ConcurrentTransitionMixin, models.Model),
        ),
        migrations.CreateModel(
            name="Refund",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "refund_id",
                    models.CharField(
                        default=payments.models.refunds._new_refund_id, editable=False, max_length=40, unique=True
                    ),
                ),
                ("amount", models.BigIntegerField()),
                ("currency", models.CharField(max_length=3)),
                ("reason", models.CharField(blank=True, db_default="", default="", max_length=100)),
                ("seller_from_pending", models.BigIntegerField()),
                ("seller_from_available", models.BigIntegerField()),
                ("platform_fee_part", models.BigIntegerField()),
                (
                    "status",
                    django_fsm.FSMField(
                        choices=[
                            ("NOT_STARTED", "Not Started"),
                            ("EXECUTING", "Executing"),
                            ("PENDING", "Pending"),
                            ("UNKNOWN", "Unknown"),
                            ("SUCCEEDED", "Succeeded"),
                            ("FAILED", "Failed"),
                        ],
                        default="NOT_STARTED",
                        max_length=50,
                        protected=True,
                    ),
                ),
                ("psp_reference", models.CharField(blank=True, db_default="", default="", max_length=255)),
                ("failure_code", models.CharField(blank=True, db_default="", default="", max_length=100)),
                ("failure_reason", models.TextField(blank=True, db_default="", default="")),
                ("attempts", models.PositiveIntegerField(db_default=0, default=0)),
                ("actor", models.CharField(max_length=100)),
                ("created_at", models.DateTimeField(db_default=django.db.models.functions.datetime.Now())),
                (
                    "updated_at",
                    models.DateTimeField(auto_now=True, db_default=django.db.models.functions.datetime.Now()),
                ),
            ],
            bases=(django_fsm.ConcurrentTransitionMixin, models.Model),
        ),
        migrations.AddField(
            model_name="paymentorder",
            name="captured_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="paymentorder",
            name="platform_fee",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="paymentorder",
            name="released_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddIndex(
            model_name="paymentorder",
            index=models.Index(
                condition=models.Q(("captured_at__isnull", False), ("released_at__isnull", True)),
                fields=["captured_at"],
                name="order_unreleased_idx",
            ),
        ),
        migrations.AddConstraint(
            model_name="dispute",
            constraint=models.CheckConstraint(
                condition=models.Q(("amount__gt", 0), ("fee__gte", 0)), name="dispute_amounts_valid"
            ),
        ),
        migrations.AddConstraint(
            model_name="dispute",
            constraint=models.CheckConstraint(
                condition=models.Q(("status__in", ["OPEN", "WON", "LOST"])), name="dispute_status_known"
            ),
        ),
        migrations.AddField(
            model_name="disputeallocation",
            name="dispute",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT, related_name="allocations", to="payments.dispute"
            ),
        ),
        migrations.AddField(
            model_name="disputeallocation",
            name="order",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="dispute_allocations",
                to="payments.paymentorder",
            ),
        ),
        migrations.AddField(
            model_name="payout",
            name="seller",
            field=models.ForeignKey(
                db_column="seller_account",
                on_delete=django.db.models.deletion.PROTECT,
                related_name="payouts",
                to="wallets.seller",
                to_field="account",
            ),
        ),
        migrations.AddField(
            model_name="refund",
            name="order",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT, related_name="refunds", to="payments.paymentorder"
            ),
        ),
        migrations.AddConstraint(
            model_name="disputeallocation",
            constraint=models.UniqueConstraint(fields=("dispute", "order"), name="dispute_allocation_unique"),
        ),
        migrations.AddConstraint(
            model_name="disputeallocation",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    (
                        "amount",
                        django.db.models.expressions.CombinedExpression(
                            django.db.models.expressions.CombinedExpression(
                                models.F("seller_from_pending"), "+", models.F("seller_from_available")
                            ),
                            "+",
                            models.F("platform_fee_part"),
                        ),
                    )
                ),
                name="dispute_allocation_parts_add_up",
            ),
        ),
        migrations.AddIndex(
            model_name="payout",
            index=models.Index(fields=["status", "updated_at"], name="payout_status_idx"),
        ),
        migrations.AddIndex(
            model_name="payout",
            index=models.Index(fields=["seller", "-created_at"], name="payout_seller_idx"),
        ),
        migrations.AddConstraint(
            model_name="payout",
            constraint=models.CheckConstraint(
                condition=models.Q(("amount__gt", 0), ("payout_amount__gt", 0)), name="payout_amounts_positive"
            ),
        ),
        migrations.AddConstraint(
            model_name="payout",
            constraint=models.UniqueConstraint(
                condition=models.Q(("status__in", ["EXECUTING", "NOT_STARTED", "UNKNOWN"])),
                fields=("seller", "currency"),
                name="payout_one_open_per_wallet",
            ),
        ),
        migrations.AddIndex(
            model_name="refund",
            index=models.Index(fields=["status", "updated_at"], name="refund_status_idx"),
        ),
        migrations.AddConstraint(
            model_name="refund",
            constraint=models.CheckConstraint(condition=models.Q(("amount__gt", 0)), name="refund_amount_positive"),
        ),
        migrations.AddConstraint(
            model_name="refund",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("platform_fee_part__gte", 0), ("seller_from_available__gte", 0), ("seller_from_pending__gte", 0)
                ),
                name="refund_parts_not_negative",
            ),
        ),
        migrations.AddConstraint(
            model_name="refund",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    (
                        "amount",
                        django.db.models.expressions.CombinedExpression(
                            django.db.models.expressions.CombinedExpression(
                                models.F("seller_from_pending"), "+", models.F("seller_from_available")
                            ),
                            "+",
                            models.F("platform_fee_part"),
                        ),
                    )
                ),
                name="refund_parts_add_up",
            ),
        ),
        migrations.RunSQL(_guard(ALLOWED_EDGES), _guard(_GUARD.ALLOWED_EDGES)),
    ]
