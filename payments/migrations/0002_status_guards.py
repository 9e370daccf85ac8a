"""PostgreSQL guards behind the order state machine, so that code which bypasses the model cannot bend it.

- An order's status may change only along an edge of the state machine (PaymentOrder's transitions), whatever
  runs the UPDATE. The model's test compares both graphs, so they cannot drift apart.
- The transition log is append-only: UPDATE and DELETE on it are refused.
"""

from django.db import migrations

ALLOWED_EDGES = [
    ("NOT_STARTED", "EXECUTING"),
    ("EXECUTING", "UNKNOWN"),
    ("EXECUTING", "PENDING"),
    ("UNKNOWN", "PENDING"),
    ("EXECUTING", "SUCCESS"),
    ("PENDING", "SUCCESS"),
    ("UNKNOWN", "SUCCESS"),
    ("EXECUTING", "FAILED"),
    ("PENDING", "FAILED"),
    ("UNKNOWN", "FAILED"),
    ("SUCCESS", "PARTIALLY_REFUNDED"),
    ("SUCCESS", "REFUNDED"),
    ("PARTIALLY_REFUNDED", "REFUNDED"),
]

_edges = ", ".join(f"('{source}', '{target}')" for source, target in ALLOWED_EDGES)

FORWARD = f"""
CREATE FUNCTION payments_order_status_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (OLD.status, NEW.status) NOT IN ({_edges}) THEN
        RAISE EXCEPTION 'payment order %: % -> % is not a transition of the order state machine',
            OLD.payment_order_id, OLD.status, NEW.status
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER payments_order_status_guard
    BEFORE UPDATE OF status ON payments_paymentorder
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION payments_order_status_guard();

CREATE FUNCTION payments_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER payments_ordertransition_append_only
    BEFORE UPDATE OR DELETE ON payments_ordertransition
    FOR EACH ROW EXECUTE FUNCTION payments_append_only();
"""

BACKWARD = """
DROP TRIGGER payments_ordertransition_append_only ON payments_ordertransition;
DROP FUNCTION payments_append_only();
DROP TRIGGER payments_order_status_guard ON payments_paymentorder;
DROP FUNCTION payments_order_status_guard();
"""


class Migration(migrations.Migration):
    dependencies = [("payments", "0001_initial")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
