"""Entries can only be added to a journal transaction in the database transaction that creates it, and carry its
effective time: a committed posting cannot grow afterwards, nor be backdated by a stray entry. Checked at COMMIT by
the same deferred trigger that checks the balance."""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION ledger_journal_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    journal record;
    unbalanced record;
BEGIN
    SELECT j.created_at, j.effective_at INTO journal FROM ledger_journaltransaction j WHERE j.id = NEW.journal_id;
    IF journal.created_at < transaction_timestamp() THEN
        RAISE EXCEPTION 'journal transaction % was committed before: corrections are new postings', NEW.journal_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.effective_at IS DISTINCT FROM journal.effective_at THEN
        RAISE EXCEPTION 'an entry of journal transaction % must carry its effective time', NEW.journal_id
            USING ERRCODE = 'check_violation';
    END IF;
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
"""


class Migration(migrations.Migration):
    dependencies = [("ledger", "0003_entry_account_single_key")]

    operations = [migrations.RunSQL(FORWARD, migrations.RunSQL.noop)]
