"""The rest of what keeps a wallet equal to its ledger accounts, whatever code runs.

- A wallet keeps its seller and currency, and is never deleted or truncated.
- Its account mappings are append-only, and an account that already has entries cannot be mapped: the projection
  only counts entries inserted after the mapping, so a late mapping would start the wallet wrong.
TRUNCATE stays liftable per session with ``ledger.allow_truncate`` (the test suite's flush), like the ledger's.
"""

from django.db import migrations

FORWARD = """
CREATE FUNCTION wallets_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' AND current_setting('ledger.allow_truncate', true) = 'on' THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' AND TG_TABLE_NAME = 'wallets_wallet' THEN
        -- (nested: PL/pgSQL does not promise to stop evaluating an AND early, and the mapping table has no seller)
        IF (NEW.seller_account, NEW.currency) IS NOT DISTINCT FROM (OLD.seller_account, OLD.currency) THEN
            RETURN NEW;  -- amounts: wallets_amounts_from_ledger_only decides
        END IF;
    END IF;
    RAISE EXCEPTION '%: % refused; wallets and their accounts only ever grow', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER wallets_wallet_frozen
    BEFORE UPDATE OR DELETE ON wallets_wallet
    FOR EACH ROW EXECUTE FUNCTION wallets_frozen();
CREATE TRIGGER wallets_wallet_no_truncate
    BEFORE TRUNCATE ON wallets_wallet
    FOR EACH STATEMENT EXECUTE FUNCTION wallets_frozen();
CREATE TRIGGER wallets_walletaccount_frozen
    BEFORE UPDATE OR DELETE ON wallets_walletaccount
    FOR EACH ROW EXECUTE FUNCTION wallets_frozen();
CREATE TRIGGER wallets_walletaccount_no_truncate
    BEFORE TRUNCATE ON wallets_walletaccount
    FOR EACH STATEMENT EXECUTE FUNCTION wallets_frozen();

CREATE FUNCTION wallets_map_fresh_account_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A mapping that exists already is a repeat (INSERT ... ON CONFLICT runs this first): the conflict will skip it.
    IF EXISTS (SELECT 1 FROM wallets_walletaccount m WHERE m.account_id = NEW.account_id) THEN
        RETURN NEW;
    END IF;
    IF EXISTS (SELECT 1 FROM ledger_entry e WHERE e.account_id = NEW.account_id) THEN
        RAISE EXCEPTION 'account % already has entries: a wallet must be mapped before anything posts to it',
            NEW.account_id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER wallets_map_fresh_account_only
    BEFORE INSERT ON wallets_walletaccount
    FOR EACH ROW EXECUTE FUNCTION wallets_map_fresh_account_only();
"""

BACKWARD = """
DROP TRIGGER wallets_map_fresh_account_only ON wallets_walletaccount;
DROP FUNCTION wallets_map_fresh_account_only();
DROP TRIGGER wallets_walletaccount_no_truncate ON wallets_walletaccount;
DROP TRIGGER wallets_walletaccount_frozen ON wallets_walletaccount;
DROP TRIGGER wallets_wallet_no_truncate ON wallets_wallet;
DROP TRIGGER wallets_wallet_frozen ON wallets_wallet;
DROP FUNCTION wallets_frozen();
"""


class Migration(migrations.Migration):
    dependencies = [("wallets", "0004_alter_walletaccount_wallet_and_more")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
