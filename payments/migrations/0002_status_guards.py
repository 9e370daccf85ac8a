"""PostgreSQL guards behind the order state machine, so that code which bypasses the model cannot bend it.

- An order is born NOT_STARTED.
- Its status may change only along an edge of the state machine (PaymentOrder's transitions), whatever runs the
  UPDATE. The model's test compares both graphs, so they cannot drift apart.
- Every status change is explained by a transition log row written earlier in the same transaction (its
  created_at, the statement's time, is not before the transaction's start): a bulk ``.update(status=...)`` is
  refused.
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
    ("NOT_STARTED", "FAILED"),
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

CREATE FUNCTION payments_order_transition_logged() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM payments_ordertransition t
        WHERE t.order_id = NEW.id AND t.from_status = OLD.status AND t.to_status = NEW.status
          AND t.created_at >= transaction_timestamp()
    ) THEN
        RAISE EXCEPTION 'payment order %: % -> % has no transition log row in this transaction',
            OLD.payment_order_id, OLD.status, NEW.status
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER payments_order_transition_logged
    AFTER UPDATE OF status ON payments_paymentorder
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION payments_order_transition_logged();

CREATE FUNCTION payments_order_born_not_started() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status <> 'NOT_STARTED' THEN
        RAISE EXCEPTION 'payment order %: a new order starts NOT_STARTED, not %', NEW.payment_order_id, NEW.status
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER payments_order_born_not_started
    BEFORE INSERT ON payments_paymentorder
    FOR EACH ROW EXECUTE FUNCTION payments_order_born_not_started();

CREATE FUNCTION payments_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER payments_ordertransition_append_only
    BEFORE UPDATE OR DELETE ON payments_ordertransition
    FOR EACH ROW EXECUTE FUNCTION payments_append_only();
"""

BACKWARD = """
DROP TRIGGER payments_order_born_not_started ON payments_paymentorder;
DROP FUNCTION payments_order_born_not_started();
DROP TRIGGER payments_order_transition_logged ON payments_paymentorder;
DROP FUNCTION payments_order_transition_logged();
DROP TRIGGER payments_ordertransition_append_only ON payments_ordertransition;
DROP FUNCTION payments_append_only();
DROP TRIGGER payments_order_status_guard ON payments_paymentorder;
DROP FUNCTION payments_order_status_guard();
"""


class Migration(migrations.Migration):
    dependencies = [("payments", "0001_initial")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
