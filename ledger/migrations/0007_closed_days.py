"""Closed days (models.py, "Closed days"): the rollup tables, the trigger that keeps them exact when a posting is
back-dated into a closed day, and a block range index on the entries' effective time.

Nothing is closed here (``closed_through`` starts NULL, and balances read every entry until the first close): the
close job, or ``manage.py ledger_close`` once after deploying, fills the tables. Not atomic, for the index: built
CONCURRENTLY, since every posting writes the entries table.
"""

import django.db.models.deletion
from django.contrib.postgres.indexes import BrinIndex
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models

FORWARD = """
INSERT INTO ledger_ledgerclosing (id, closed_through) VALUES (1, NULL);

-- After each statement that adds entries: those effective in a closed day go into that day's row, its month's and the
-- account's total, in the posting's own transaction. The others (all but back-dated postings) cost one read of one row.
CREATE FUNCTION ledger_closed_days_add() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    closed_end timestamptz;
BEGIN
    IF current_setting('transaction_isolation') = 'read committed' THEN
        -- A fresh snapshot: a close that committed while this statement waited for its lock is seen.
        SELECT (closed_through + 1)::timestamp AT TIME ZONE 'UTC' INTO closed_end FROM ledger_ledgerclosing;
    ELSE
        -- A transaction's older snapshot could miss a close that has committed since: locking the row makes
        -- PostgreSQL refuse (a serialization failure) rather than leave these entries out of a closed day.
        SELECT (closed_through + 1)::timestamp AT TIME ZONE 'UTC' INTO closed_end FROM ledger_ledgerclosing
        FOR KEY SHARE;
    END IF;
    IF closed_end IS NULL OR NOT EXISTS (SELECT 1 FROM added WHERE effective_at < closed_end) THEN
        RETURN NULL;
    END IF;
    -- Rows in (account, day) order: two back-dated postings lock them in the same order.
    INSERT INTO ledger_accountday (account_id, day, debits, credits)
    SELECT account_id, (effective_at AT TIME ZONE 'UTC')::date,
           coalesce(sum(amount) FILTER (WHERE side = 'D'), 0), coalesce(sum(amount) FILTER (WHERE side = 'C'), 0)
    FROM added WHERE effective_at < closed_end
    GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (account_id, day) DO UPDATE
        SET debits = ledger_accountday.debits + excluded.debits, credits = ledger_accountday.credits + excluded.credits;
    INSERT INTO ledger_accountmonth (account_id, month, debits, credits)
    SELECT account_id, date_trunc('month', effective_at AT TIME ZONE 'UTC')::date,
           coalesce(sum(amount) FILTER (WHERE side = 'D'), 0), coalesce(sum(amount) FILTER (WHERE side = 'C'), 0)
    FROM added WHERE effective_at < closed_end
    GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (account_id, month) DO UPDATE
        SET debits = ledger_accountmonth.debits + excluded.debits,
            credits = ledger_accountmonth.credits + excluded.credits;
    INSERT INTO ledger_accountclosedtotal (account_id, debits, credits)
    SELECT account_id,
           coalesce(sum(amount) FILTER (WHERE side = 'D'), 0), coalesce(sum(amount) FILTER (WHERE side = 'C'), 0)
    FROM added WHERE effective_at < closed_end
    GROUP BY 1 ORDER BY 1
    ON CONFLICT (account_id) DO UPDATE
        SET debits = ledger_accountclosedtotal.debits + excluded.debits,
            credits = ledger_accountclosedtotal.credits + excluded.credits;
    RETURN NULL;
END $$;

CREATE TRIGGER ledger_entry_closed_days AFTER INSERT ON ledger_entry
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION ledger_closed_days_add();
"""

BACKWARD = """
DROP TRIGGER ledger_entry_closed_days ON ledger_entry;
DROP FUNCTION ledger_closed_days_add();
DELETE FROM ledger_ledgerclosing;
"""


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("ledger", "0006_search_indexes"),
    ]

    operations = [
        migrations.CreateModel(
            name="AccountClosedTotal",
            fields=[
                (
                    "account",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.PROTECT,
                        primary_key=True,
                        related_name="+",
                        serialize=False,
                        to="ledger.account",
                    ),
                ),
                ("debits", models.BigIntegerField()),
                ("credits", models.BigIntegerField()),
            ],
        ),
        migrations.CreateModel(
            name="LedgerClosing",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("closed_through", models.DateField(null=True)),
            ],
            options={
                "constraints": [models.CheckConstraint(condition=models.Q(("id", 1)), name="ledger_closing_one_row")],
            },
        ),
        migrations.CreateModel(
            name="AccountDay",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("day", models.DateField()),
                ("debits", models.BigIntegerField()),
                ("credits", models.BigIntegerField()),
                (
                    "account",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="ledger.account",
                    ),
                ),
            ],
            options={
                "indexes": [models.Index(fields=["day"], name="ledger_account_day_day_idx")],
                "constraints": [models.UniqueConstraint(fields=("account", "day"), name="ledger_account_day_unique")],
            },
        ),
        migrations.CreateModel(
            name="AccountMonth",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("month", models.DateField()),
                ("debits", models.BigIntegerField()),
                ("credits", models.BigIntegerField()),
                (
                    "account",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="ledger.account",
                    ),
                ),
            ],
            options={
                "indexes": [models.Index(fields=["month"], name="ledger_account_month_month_idx")],
                "constraints": [
                    models.UniqueConstraint(fields=("account", "month"), name="ledger_account_month_unique")
                ],
            },
        ),
        migrations.RunSQL(FORWARD, BACKWARD),
        AddIndexConcurrently(
            model_name="entry",
            index=BrinIndex(fields=["effective_at"], name="ledger_entry_time_brin"),
        ),
    ]
