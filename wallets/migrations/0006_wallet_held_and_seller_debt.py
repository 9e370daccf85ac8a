"""A fourth bucket, ``held`` (funds a buyer disputes), and seller debt.

``available`` may now go below zero, but only through a posting that takes money back from a seller (a refund or a
dispute hold, the kinds wallets.services.DEBT_KINDS names): after a payout the seller owes it, and the funds released
next net it off. Any other posting that would take ``available`` below zero (a payout reservation of money that is
not there) is refused in its own statement, reported as the constraint ``wallet_available_not_negative`` that the
CHECK it replaces had, so callers handle both alike.
"""

from django.db import migrations, models

# Frozen here as they were when this migration was written; a test holds wallets.services.DEBT_KINDS to them.
DEBT_KINDS = ("refund", "dispute_hold")


FORWARD = """
CREATE OR REPLACE FUNCTION wallets_apply_entry() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    target record;
    delta bigint;
    available_now bigint;
BEGIN
    SELECT wallet_id, bucket INTO target FROM wallets_walletaccount WHERE account_id = NEW.account_id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    delta := CASE NEW.side WHEN 'C' THEN NEW.amount ELSE -NEW.amount END;
    UPDATE wallets_wallet SET
        pending = pending + CASE WHEN target.bucket = 'pending' THEN delta ELSE 0 END,
        available = available + CASE WHEN target.bucket = 'available' THEN delta ELSE 0 END,
        reserved = reserved + CASE WHEN target.bucket = 'reserved' THEN delta ELSE 0 END,
        held = held + CASE WHEN target.bucket = 'held' THEN delta ELSE 0 END,
        updated_at = statement_timestamp()
    WHERE id = target.wallet_id
    RETURNING available INTO available_now;
    IF target.bucket = 'available' AND delta < 0 AND available_now < 0
       AND (SELECT kind FROM ledger_journaltransaction WHERE id = NEW.journal_id) NOT IN %(debt_kinds)s THEN
        RAISE EXCEPTION 'wallet %%: available would be %%; only money taken back from a seller may make a debt',
            target.wallet_id, available_now
            USING ERRCODE = 'check_violation', CONSTRAINT = 'wallet_available_not_negative',
                  TABLE = 'wallets_wallet';
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION wallets_amounts_from_ledger_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Depth 1 is a statement someone ran; the projection's own UPDATE runs one trigger deeper.
    IF pg_trigger_depth() < 2 AND (NEW.pending, NEW.available, NEW.reserved, NEW.held)
                                  IS DISTINCT FROM (OLD.pending, OLD.available, OLD.reserved, OLD.held) THEN
        RAISE EXCEPTION 'wallet %%: amounts change only through ledger postings', OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;

CREATE OR REPLACE FUNCTION wallets_born_empty() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.pending, NEW.available, NEW.reserved, NEW.held)
       IS DISTINCT FROM (0::bigint, 0::bigint, 0::bigint, 0::bigint) THEN
        RAISE EXCEPTION 'wallet of %%: a new wallet starts empty', NEW.seller_account
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
""" % {"debt_kinds": "(" + ", ".join(f"'{kind}'" for kind in DEBT_KINDS) + ")"}


class Migration(migrations.Migration):
    dependencies = [
        ("ledger", "0005_alter_entry_account"),
        ("wallets", "0005_wallet_guards"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="wallet",
            name="wallet_available_not_negative",
        ),
        migrations.RemoveConstraint(
            model_name="walletaccount",
            name="wallet_account_bucket_known",
        ),
        migrations.AddField(
            model_name="wallet",
            name="held",
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AlterField(
            model_name="walletaccount",
            name="bucket",
            field=models.CharField(
                choices=[
                    ("pending", "Pending"),
                    ("available", "Available"),
                    ("reserved", "Reserved"),
                    ("held", "Held"),
                ],
                max_length=10,
            ),
        ),
        migrations.AddConstraint(
            model_name="wallet",
            constraint=models.CheckConstraint(condition=models.Q(("held__gte", 0)), name="wallet_held_not_negative"),
        ),
        migrations.AddConstraint(
            model_name="walletaccount",
            constraint=models.CheckConstraint(
                condition=models.Q(("bucket__in", ["pending", "available", "reserved", "held"])),
                name="wallet_account_bucket_known",
            ),
        ),
        migrations.RunSQL(FORWARD, migrations.RunSQL.noop),
    ]
