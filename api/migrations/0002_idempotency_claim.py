"""``api_idempotency_claim``: the first step of every idempotent POST in one round trip instead of three.

It takes the (client, key) pair's transaction-scoped advisory lock without waiting, removes the stored response if it
has expired and the lock is ours, and returns what is stored. It must be a VOLATILE function: in READ COMMITTED each
statement inside it takes a fresh snapshot, so the lookup runs after the lock is held and sees the row of a first
request that committed (and let go of the lock) a moment earlier. A single plain SELECT could not promise that: its
snapshot would predate its own lock.
"""

from django.db import migrations

FORWARD = """
CREATE FUNCTION api_idempotency_claim(p_lock bigint, p_client bigint, p_key varchar)
RETURNS TABLE (locked boolean, request_fingerprint varchar, response_status smallint, response_body text,
               expired boolean)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    got boolean := pg_try_advisory_xact_lock(p_lock);
BEGIN
    IF got THEN
        DELETE FROM api_idempotencykey k WHERE k.client_id = p_client AND k.key = p_key AND k.expires_at <= now();
    END IF;
    RETURN QUERY
        SELECT got, k.request_fingerprint, k.response_status::smallint, k.response_body, k.expires_at <= now()
        FROM (SELECT 1) AS one
        LEFT JOIN api_idempotencykey k ON k.client_id = p_client AND k.key = p_key;
END $$;
"""

BACKWARD = "DROP FUNCTION api_idempotency_claim(bigint, bigint, varchar);"


class Migration(migrations.Migration):
    dependencies = [("api", "0001_initial")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
