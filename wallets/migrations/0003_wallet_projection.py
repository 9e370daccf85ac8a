"""Wallets as a projection of the ledger, kept by PostgreSQL itself.

Every entry on an account that backs a wallet bucket moves that bucket by the entry's amount (credit up, debit down:
the accounts are liabilities) in the same statement as the entry, under the wallet row's lock. The wallet's CHECKs
then refuse, at that very statement, a posting that would take a bucket below zero. Any other change of a wallet's
amounts is refused, so a wallet always equals its ledger accounts.
"""

from django.db import migrations

FORWARD = """
CREATE FUNCTION wallets_apply_entry() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    target record;
    delta bigint;
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
        updated_at = statement_timestamp()
    WHERE id = target.wallet_id;
    RETURN NULL;
END $$;

CREATE TRIGGER wallets_apply_entry
    AFTER INSERT ON ledger_entry
    FOR EACH ROW EXECUTE FUNCTION wallets_apply_entry();

CREATE FUNCTION wallets_amounts_from_ledger_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Depth 1 is a statement someone ran; the projection's own UPDATE runs one trigger deeper.
    IF pg_trigger_depth() < 2 AND (NEW.pending, NEW.available, NEW.reserved)
                                  IS DISTINCT FROM (OLD.pending, OLD.available, OLD.reserved) THEN
        RAISE EXCEPTION 'wallet %: amounts change only through ledger postings', OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER wallets_amounts_from_ledger_only
    BEFORE UPDATE ON wallets_wallet
    FOR EACH ROW EXECUTE FUNCTION wallets_amounts_from_ledger_only();

CREATE FUNCTION wallets_born_empty() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.pending, NEW.available, NEW.reserved) IS DISTINCT FROM (0::bigint, 0::bigint, 0::bigint) THEN
        RAISE EXCEPTION 'wallet of %: a new wallet starts empty', NEW.seller_account
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER wallets_born_empty
    BEFORE INSERT ON wallets_wallet
    FOR EACH ROW EXECUTE FUNCTION wallets_born_empty();
"""

BACKWARD = """
DROP TRIGGER wallets_born_empty ON wallets_wallet;
DROP FUNCTION wallets_born_empty();
DROP TRIGGER wallets_amounts_from_ledger_only ON wallets_wallet;
DROP FUNCTION wallets_amounts_from_ledger_only();
DROP TRIGGER wallets_apply_entry ON ledger_entry;
DROP FUNCTION wallets_apply_entry();
"""


class Migration(migrations.Migration):
    dependencies = [("wallets", "0002_wallets"), ("ledger", "0002_ledger_guards")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
