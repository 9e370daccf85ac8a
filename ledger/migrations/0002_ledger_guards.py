"""PostgreSQL keeps the ledger balanced and append-only, whatever code runs against it.

- An entry's currency is its account's: a foreign key on (account_id, currency).
- At COMMIT, every journal transaction that received entries must sum to zero in each currency on its own, and a
  journal transaction must have entries at all (deferred constraint triggers, so a posting may insert its header and
  entries in any order within the transaction).
- Entries and journal transactions refuse UPDATE, DELETE and TRUNCATE: corrections are new postings. A session may
  lift the TRUNCATE refusal with ``SET ledger.allow_truncate = 'on'``: the test suite's database flush does, nothing
  else should.
"""

from django.db import migrations

FORWARD = """
ALTER TABLE ledger_entry
    ADD CONSTRAINT ledger_entry_account_currency_fk FOREIGN KEY (account_id, currency)
    REFERENCES ledger_account (id, currency);

CREATE FUNCTION ledger_journal_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    unbalanced record;
BEGIN
    SELECT e.currency, sum(CASE e.side WHEN 'D' THEN e.amount ELSE -e.amount END) AS net INTO unbalanced
    FROM ledger_entry e
    WHERE e.journal_id = NEW.journal_id
    GROUP BY e.currency
    HAVING sum(CASE e.side WHEN 'D' THEN e.amount ELSE -e.amount END) <> 0
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'journal transaction % does not balance in %: debits - credits = %',
            NEW.journal_id, unbalanced.currency, unbalanced.net
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER ledger_journal_balanced
    AFTER INSERT ON ledger_entry
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_journal_balanced();

CREATE FUNCTION ledger_journal_has_entries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM ledger_entry e WHERE e.journal_id = NEW.id) THEN
        RAISE EXCEPTION 'journal transaction % (%:%) has no entries', NEW.id, NEW.kind, NEW.reference
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER ledger_journal_has_entries
    AFTER INSERT ON ledger_journaltransaction
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_journal_has_entries();

CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' AND current_setting('ledger.allow_truncate', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION '% is append-only: % refused; correct it with a new posting', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER ledger_entry_append_only
    BEFORE UPDATE OR DELETE ON ledger_entry
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_entry_no_truncate
    BEFORE TRUNCATE ON ledger_entry
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_journal_append_only
    BEFORE UPDATE OR DELETE ON ledger_journaltransaction
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_journal_no_truncate
    BEFORE TRUNCATE ON ledger_journaltransaction
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();
"""

BACKWARD = """
DROP TRIGGER ledger_journal_no_truncate ON ledger_journaltransaction;
DROP TRIGGER ledger_journal_append_only ON ledger_journaltransaction;
DROP TRIGGER ledger_entry_no_truncate ON ledger_entry;
DROP TRIGGER ledger_entry_append_only ON ledger_entry;
DROP FUNCTION ledger_append_only();
DROP TRIGGER ledger_journal_has_entries ON ledger_journaltransaction;
DROP FUNCTION ledger_journal_has_entries();
DROP TRIGGER ledger_journal_balanced ON ledger_entry;
DROP FUNCTION ledger_journal_balanced();
ALTER TABLE ledger_entry DROP CONSTRAINT ledger_entry_account_currency_fk;
"""


class Migration(migrations.Migration):
    dependencies = [("ledger", "0001_initial")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
