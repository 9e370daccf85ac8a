"""A production-sized data set for the finance console, loaded set-based in SQL (``manage.py seed_volume``).

Every row is computed by ``INSERT ... SELECT`` over ``generate_series``, never one by one: a million payments load in
minutes. The data is consistent the way the running system makes it:

- payments of two orders each, to sellers of one currency (EUR, USD, GBP), over the last ``days`` days; a fifth of
  them on the hosted page (one charge ``pi_`` and one session ``cs_`` for both orders);
- orders mostly SUCCESS (``psp_reference``, ``captured_at``, ``platform_fee``), some FAILED, a few PENDING (the last
  day), some refunded in full or in part (one refund each), a few disputed (won, lost or open), each with the
  transitions that led there;
- the ledger postings the services would have made: a pay-in per captured order, the refund, the dispute's
  withdrawal, hold and outcome, the release after the hold period, and monthly payouts of every wallet's available
  balance (reserve, send, paid); wallets equal to their ledger accounts;
- webhook events for every charge, session, refund and dispute; dead letters; the nightly reconciliation runs with
  the items they settled and some findings (a few open), their audit trail; daily ledger check runs; the last day's
  idempotency keys.

PostgreSQL's guards refuse a load like this one: an order must be born NOT_STARTED and move along the state machine
with a log row written in the same transaction, entries and the transition log are append-only, wallets move only
with their entries. The load therefore runs with ``session_replication_role = replica`` for its own transaction
(``SET LOCAL``), which turns off ordinary triggers (those guards) and the foreign key checks for its statements only.
What the guards would have ensured is then checked: every amount is derived here the way the services derive it,
wallets are computed from their entries at the end, and the command runs the ledger checks on the result.

Ids: every table the load writes keeps its own primary keys, taken above what is there already (so a database with
demo data can be loaded too); public ids (``pay_``, ``pi_``, ``rf_``...) are derived from those keys, so they are
unique, and the same ``--seed`` gives the same data.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from api.models import ApiClient
from api.services import api_client_create
from ledger.money import minor_unit_exponent
from ledger.services import AccountRef, accounts_ensure
from payments.payouts import SCHEDULE_ACTOR as PAYOUT_SCHEDULE_ACTOR
from reconciliation.selectors import CHECKS
from wallets.fees import platform_fee
from wallets.payouts import payout_clearing_account
from wallets.returns import dispute_clearing_account
from wallets.services import platform_fees_account, psp_clearing_account, psp_fees_account

CLIENT_NAME = "volume-storefront"
# Sellers per currency, by the seller number's last digit: 7 in 10 sell in EUR, 2 in USD, 1 in GBP.
SELLER_CURRENCIES = ["EUR"] * 7 + ["USD"] * 2 + ["GBP"]
# The PSP's dispute fee in major units (the sandbox's, as Stripe's).
DISPUTE_FEE = 15
# Tables whose primary keys the load chooses itself (derived public ids need them); their sequences move past them.
EXPLICIT_IDS = [
    "payments_paymentevent",
    "payments_paymentorder",
    "payments_refund",
    "payments_dispute",
    "payments_payout",
    "payments_webhookevent",
    "ledger_journaltransaction",
]
# The big tables: their secondary indexes are dropped for the load and built again after it, in one pass each (a
# sort), which is several times faster than updating them row by row. Indexes behind constraints (primary keys,
# unique) stay; the load inserts in their order where it can.
REBUILT_INDEXES_ON = [
    "payments_paymentevent",
    "payments_paymentorder",
    "payments_ordertransition",
    "payments_payout",
    "payments_webhookevent",
    "ledger_journaltransaction",
    "ledger_entry",
    "reconciliation_settleditem",
]
_SECONDARY_INDEXES = """
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), pg_get_indexdef(i.indexrelid)
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE i.indrelid = ANY(%(tables)s::regclass[])
  AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
ORDER BY 1
"""
# What the load writes, for VACUUM ANALYZE afterwards (statistics and the visibility map, as autovacuum would).
LOADED_TABLES = [
    *EXPLICIT_IDS,
    "payments_ordertransition",
    "payments_disputeallocation",
    "payments_webhookevent",
    "payments_deadletter",
    "ledger_entry",
    "ledger_account",
    "wallets_seller",
    "wallets_wallet",
    "wallets_walletaccount",
    "reconciliation_reconciliationrun",
    "reconciliation_settleditem",
    "reconciliation_mismatch",
    "reconciliation_ledgercheckrun",
    "reconciliation_adjustment",
    "audit_auditentry",
    "api_idempotencykey",
]


@dataclass(frozen=True)
class Step:
    name: str
    rows: int
    seconds: float


# --- The steps, in order. Parameters: see ``_parameters``. -----------------------------------------------------------

_SETUP = """
SET LOCAL session_replication_role = replica;
SET LOCAL synchronous_commit = off;
SET LOCAL work_mem = '256MB';
SET LOCAL maintenance_work_mem = '512MB';
SET LOCAL jit = off;
SET LOCAL temp_buffers = '1GB';
SELECT setseed(%(seed)s);
CREATE FUNCTION pg_temp.public_id(prefix text, n bigint) RETURNS text LANGUAGE sql IMMUTABLE AS
    $$ SELECT prefix || '_' || lpad(to_hex(n), 10, '0') || substr(md5(prefix || n::text), 1, 16) $$;
-- A settlement line's balance transaction: one per category (0 charge, 1 refund, 2 dispute, 3 transfer) and object.
CREATE FUNCTION pg_temp.txn_id(category int, n bigint) RETURNS text LANGUAGE sql IMMUTABLE AS
    $$ SELECT pg_temp.public_id('txn', 4 * n + category) $$;
CREATE TEMP TABLE seed_currency ON COMMIT DROP AS
SELECT * FROM unnest(%(codes)s::varchar[], %(exps)s::int[], %(fee_pct)s::numeric[], %(fee_fixed)s::bigint[],
                     %(payout_min)s::bigint[], %(clearing)s::bigint[], %(fees)s::bigint[], %(psp_fees)s::bigint[],
                     %(dispute_clearing)s::bigint[], %(payout_clearing)s::bigint[])
    AS c(code, exp, fee_pct, fee_fixed, payout_min, clearing_id, fees_id, psp_fees_id, dispute_clearing_id,
         payout_clearing_id);
CREATE TEMP TABLE seed_seller ON COMMIT DROP AS
SELECT s, 'seller_' || lpad(s::text, 5, '0') AS account, (%(seller_currencies)s::varchar[])[mod(s, 10) + 1] AS currency
FROM generate_series(0, %(sellers)s - 1) AS s
"""

_SELLERS = """
INSERT INTO wallets_seller (account, display_name, payout_account, payout_currency, created_at)
SELECT account, 'Seller ' || s, 'acct_' || substr(md5(account), 1, 16), '', %(start)s
FROM seed_seller
ON CONFLICT (account) DO NOTHING
"""

_WALLETS = """
INSERT INTO wallets_wallet (seller_account, currency, pending, available, reserved, held, updated_at)
SELECT account, currency, 0, 0, 0, 0, %(start)s FROM seed_seller
ON CONFLICT (seller_account, currency) DO NOTHING
"""

_WALLET_ACCOUNTS = """
INSERT INTO ledger_account (code, type, currency, created_at)
SELECT 'seller_' || b.bucket || ':' || s.account || ':' || s.currency, 'liability', s.currency, %(start)s
FROM seed_seller s CROSS JOIN unnest(ARRAY['pending', 'available', 'reserved', 'held']) AS b(bucket)
ON CONFLICT (code) DO NOTHING;
INSERT INTO wallets_walletaccount (account_id, wallet_id, bucket)
SELECT a.id, w.id, b.bucket
FROM seed_seller s
CROSS JOIN unnest(ARRAY['pending', 'available', 'reserved', 'held']) AS b(bucket)
JOIN wallets_wallet w ON w.seller_account = s.account AND w.currency = s.currency
JOIN ledger_account a ON a.code = 'seller_' || b.bucket || ':' || s.account || ':' || s.currency
ON CONFLICT DO NOTHING;
CREATE TEMP TABLE seed_wallet ON COMMIT DROP AS
SELECT s.s, s.account, s.currency, w.id AS wallet_id,
       max(wa.account_id) FILTER (WHERE wa.bucket = 'pending') AS pending_id,
       max(wa.account_id) FILTER (WHERE wa.bucket = 'available') AS available_id,
       max(wa.account_id) FILTER (WHERE wa.bucket = 'reserved') AS reserved_id,
       max(wa.account_id) FILTER (WHERE wa.bucket = 'held') AS held_id
FROM seed_seller s
JOIN wallets_wallet w ON w.seller_account = s.account AND w.currency = s.currency
JOIN wallets_walletaccount wa ON wa.wallet_id = w.id
GROUP BY s.s, s.account, s.currency, w.id;
ANALYZE seed_wallet
"""

# One row per payment: its time (evenly spread, so ids follow time as they do in production), its sellers.
_PLAN_PAYMENTS = """
CREATE TEMP TABLE seed_payment ON COMMIT DROP AS
SELECT g, %(payment_base)s + g AS id,
       %(start)s + (g - 1) * %(seconds_per_payment)s * interval '1 second' AS created_at,
       mod(g, 5) = 0 AS hosted,
       random() AS u,
       floor(random() * %(sellers)s)::int AS s1,
       1 + floor(random() * (%(sellers)s / 10 - 1))::int AS hop,
       floor(random() * greatest(%(payments)s / 3, 1))::bigint AS buyer
FROM generate_series(1, %(payments)s) AS g;
ANALYZE seed_payment
"""

# One row per order with everything every later step needs, derived the way the services derive it: the fee (the
# fee settings), what a refund or dispute takes from pending and available and the platform's fee part
# (PLATFORM_FEE_ON_REFUND), what the release moves. Refunds come a day after capture at most, disputes open three days
# after it and close after ten: all before the release at the end of the hold period, as most do. The steps are
# MATERIALIZED: inlined, every later use of a column would compute its whole chain of expressions again.
_PLAN_ORDERS = """
CREATE TEMP TABLE seed_order ON COMMIT DROP AS
WITH typed AS MATERIALIZED (
    SELECT b.k, %(order_base)s + b.k AS id, b.event_id, b.pos, b.hosted, b.s, b.created_at, b.w,
           'po_' || b.event_id || '_' || b.pos AS payment_order_id,
           sw.account AS seller, sw.currency, sw.pending_id, sw.available_id, sw.held_id,
           c.clearing_id, c.fees_id, c.psp_fees_id, c.dispute_clearing_id, c.exp, c.fee_pct, c.fee_fixed,
           round((5 + b.a * 495)::numeric, c.exp) AS amount,
           (round((5 + b.a * 495)::numeric, c.exp) * power(10::numeric, c.exp))::bigint AS gross,
           CASE WHEN b.u < 0.07 THEN 'FAILED'
                WHEN b.u < 0.075 AND b.created_at > %(now)s - interval '1 day' THEN 'PENDING'
                WHEN b.v < 0.015 THEN 'REFUNDED'
                WHEN b.v < 0.025 THEN 'PARTIALLY_REFUNDED'
                ELSE 'SUCCESS' END AS status
    FROM (
        SELECT p.g, p.id AS event_id, p.created_at, p.hosted, x.pos, 2 * p.g - 1 + x.pos AS k,
               CASE x.pos WHEN 0 THEN p.s1 ELSE mod(p.s1 + 10 * p.hop, %(sellers)s) END AS s,
               CASE WHEN p.hosted THEN p.u ELSE random() END AS u,
               random() AS v, random() AS w, random() AS a
        FROM seed_payment p CROSS JOIN (VALUES (0), (1)) AS x(pos)
    ) b
    JOIN seed_wallet sw ON sw.s = b.s
    JOIN seed_currency c ON c.code = sw.currency
), money AS MATERIALIZED (
    SELECT t.*, least(t.gross, round(t.gross * t.fee_pct / 100) + t.fee_fixed)::bigint AS fee,
           t.status IN ('SUCCESS', 'REFUNDED', 'PARTIALLY_REFUNDED') AS captured,
           CASE WHEN t.status IN ('SUCCESS', 'REFUNDED', 'PARTIALLY_REFUNDED')
                THEN t.created_at + interval '2 seconds' END AS captured_at,
           CASE t.status WHEN 'REFUNDED' THEN t.gross WHEN 'PARTIALLY_REFUNDED' THEN t.gross / 2 ELSE 0 END
               AS refund_amount,
           t.status = 'SUCCESS' AND NOT t.hosted AND t.w < 0.001 AND t.created_at + interval '3 days' <= %(now)s
               AS disputed,
           -- what goes back to the buyer: the refund, or the whole charge for a dispute
           CASE WHEN t.status = 'REFUNDED' THEN t.gross WHEN t.status = 'PARTIALLY_REFUNDED' THEN t.gross / 2
                WHEN t.status = 'SUCCESS' AND NOT t.hosted AND t.w < 0.001
                     AND t.created_at + interval '3 days' <= %(now)s THEN t.gross
                ELSE 0 END AS returned
    FROM typed t
), parts AS MATERIALIZED (
    SELECT m.*,
           CASE WHEN %(fee_refunded)s THEN least(m.returned, round(m.fee::numeric * m.returned / m.gross))::bigint
                ELSE 0 END AS fee_part
    FROM money m
), s AS (
    SELECT p.*, least(p.returned - p.fee_part, p.gross - p.fee) AS from_pending,
           p.returned - p.fee_part - least(p.returned - p.fee_part, p.gross - p.fee) AS from_available,
           CASE WHEN NOT p.disputed THEN NULL
                WHEN p.captured_at + interval '10 days' > %(now)s THEN 'OPEN'
                WHEN p.w < 0.0004 THEN 'WON' ELSE 'LOST' END AS dispute_status
    FROM parts p
)
SELECT s.k, s.id, s.event_id, s.pos, s.hosted, s.s, s.seller, s.currency, s.exp, s.payment_order_id, s.created_at,
       s.amount, s.gross, s.fee, s.status, s.captured, s.captured_at, s.refund_amount, s.disputed, s.dispute_status,
       s.returned, s.fee_part, s.from_pending, s.from_available,
       s.pending_id, s.available_id, s.held_id, s.clearing_id, s.fees_id, s.psp_fees_id, s.dispute_clearing_id,
       -- a hosted-page payment is one charge for both orders, named after its first order
       s.id - CASE WHEN s.hosted THEN s.pos ELSE 0 END AS charge_n,
       pg_temp.public_id('pi', s.id - CASE WHEN s.hosted THEN s.pos ELSE 0 END) AS psp_reference,
       CASE WHEN s.hosted THEN pg_temp.public_id('cs', s.event_id) ELSE '' END AS psp_token,
       CASE WHEN s.captured AND s.captured_at + %(hold)s * interval '1 day' <= %(now)s
            THEN s.captured_at + %(hold)s * interval '1 day' END AS released_at,
       s.captured_at + least(interval '1 day', (%(now)s - s.captured_at) / 2) AS refunded_at,
       s.captured_at + interval '3 days' AS opened_at,
       CASE WHEN s.dispute_status IN ('WON', 'LOST') THEN s.captured_at + interval '10 days' END AS closed_at,
       s.gross - s.fee - CASE WHEN s.refund_amount > 0 OR s.dispute_status IN ('OPEN', 'LOST') THEN s.from_pending
                              ELSE 0 END AS release_amount,
       %(dispute_fee)s * power(10::numeric, s.exp)::bigint AS dispute_fee,
       %(refund_base)s + s.k AS refund_pk,
       %(dispute_base)s + s.k AS dispute_pk,
       %(journal_base)s + 8 * s.k AS jid
FROM s;
ANALYZE seed_order
"""

_PAYMENTS = """
INSERT INTO payments_paymentevent
    (id, payment_id, client_id, checkout_id, buyer_id, buyer_email, buyer_country, payment_method_token,
     hosted_page_url, created_at, updated_at)
SELECT p.id, pg_temp.public_id('pay', p.id), %(client)s, 'chk_' || p.id, 'buyer_' || p.buyer,
       'buyer_' || p.buyer || '@example.com', (ARRAY['DE', 'FR', 'NL', 'US', 'GB', 'IT', 'ES'])[mod(p.g, 7) + 1],
       CASE WHEN p.hosted THEN '' ELSE 'pm_card_visa' END,
       CASE WHEN p.hosted THEN %(sandbox)s || '/c/pay/' || pg_temp.public_id('cs', p.id) ELSE '' END,
       p.created_at, p.created_at + interval '3 seconds'
FROM seed_payment p
"""

_ORDERS = """
INSERT INTO payments_paymentorder
    (id, payment_order_id, event_id, position, seller_account, amount, amount_currency, status, psp_reference,
     psp_token, action_url, failure_code, failure_reason, attempts, captured_at, platform_fee, released_at,
     created_at, updated_at)
SELECT o.id, o.payment_order_id, o.event_id, o.pos, o.seller, o.amount, o.currency, o.status, o.psp_reference,
       o.psp_token,
       CASE WHEN o.status = 'PENDING' THEN %(sandbox)s || '/v1/sandbox/authenticate/' || o.psp_reference ELSE '' END,
       CASE WHEN o.status = 'FAILED' THEN 'card_declined' ELSE '' END,
       CASE WHEN o.status = 'FAILED' THEN 'Your card was declined.' ELSE '' END,
       1, o.captured_at, CASE WHEN o.captured THEN o.fee END, o.released_at, o.created_at,
       greatest(o.created_at + interval '2 seconds', o.released_at,
                CASE WHEN o.refund_amount > 0 THEN o.refunded_at END)
FROM seed_order o
"""

_TRANSITIONS = """
INSERT INTO payments_ordertransition (order_id, from_status, to_status, transition, reason, actor, created_at)
SELECT o.id, t.from_status, t.to_status, t.transition, t.reason, t.actor, t.at
FROM seed_order o
CROSS JOIN LATERAL (VALUES
    ('NOT_STARTED', 'EXECUTING', 'start_execution', '', 'executor', o.created_at + interval '100 milliseconds'),
    ('EXECUTING',
     CASE WHEN o.captured THEN 'SUCCESS' ELSE o.status END,
     CASE WHEN o.captured THEN 'mark_success' WHEN o.status = 'FAILED' THEN 'mark_failed' ELSE 'mark_pending' END,
     CASE WHEN o.status = 'FAILED' THEN 'Your card was declined.'
          WHEN o.status = 'PENDING' THEN 'the PSP is still working' ELSE '' END,
     'executor', o.created_at + interval '2 seconds'),
    ('SUCCESS', o.status,
     CASE o.status WHEN 'REFUNDED' THEN 'refund_fully' ELSE 'refund_partially' END,
     'requested by the storefront', 'api_client:' || %(client)s, o.refunded_at)
) AS t(from_status, to_status, transition, reason, actor, at)
WHERE t.from_status <> 'SUCCESS' OR o.refund_amount > 0
"""

_REFUNDS = """
INSERT INTO payments_refund
    (id, refund_id, order_id, amount, currency, reason, seller_from_pending, seller_from_available,
     platform_fee_part, status, psp_reference, failure_code, failure_reason, attempts, actor, created_at, updated_at)
SELECT o.refund_pk, pg_temp.public_id('rf', o.refund_pk), o.id, o.refund_amount, o.currency, 'requested_by_customer',
       o.from_pending, o.from_available, o.fee_part, 'SUCCEEDED', pg_temp.public_id('re', o.refund_pk), '', '', 1,
       'api_client:' || %(client)s, o.refunded_at, o.refunded_at + interval '1 second'
FROM seed_order o WHERE o.refund_amount > 0
"""

_DISPUTES = """
INSERT INTO payments_dispute
    (id, psp_dispute_id, payment_intent, amount, currency, fee, reason, status, opened_at, closed_at)
SELECT o.dispute_pk, pg_temp.public_id('dp', o.dispute_pk), o.psp_reference, o.gross, o.currency,
       o.dispute_fee, 'fraudulent', o.dispute_status, o.opened_at, o.closed_at
FROM seed_order o WHERE o.disputed;
INSERT INTO payments_disputeallocation
    (dispute_id, order_id, amount, seller_from_pending, seller_from_available, platform_fee_part)
SELECT o.dispute_pk, o.id, o.gross, o.from_pending, o.from_available, o.fee_part
FROM seed_order o WHERE o.disputed
"""

# Journal ids: 8 slots per order (pay-in, refund, release, and the dispute's four), then 3 per payout.
_JOURNALS = """
INSERT INTO ledger_journaltransaction (id, kind, reference, effective_at, memo, actor, created_at)
SELECT j.id, j.kind, j.reference, j.at, '', j.actor, j.at
FROM (
    SELECT o.jid + 1 AS id, 'payin' AS kind, o.payment_order_id AS reference, o.captured_at AS at,
           'executor' AS actor
    FROM seed_order o WHERE o.captured
    UNION ALL
    SELECT o.jid + 2, 'refund', pg_temp.public_id('rf', o.refund_pk), o.refunded_at, 'api_client:' || %(client)s
    FROM seed_order o WHERE o.refund_amount > 0
    UNION ALL
    SELECT o.jid + 3, 'release', o.seller || ':' || o.currency || ':' || o.payment_order_id, o.released_at,
           'hold-period'
    FROM seed_order o WHERE o.released_at IS NOT NULL AND o.release_amount > 0
    UNION ALL
    SELECT d.id, d.kind, d.reference, d.at, 'webhook'
    FROM seed_order o
    CROSS JOIN LATERAL (VALUES
        (o.jid + 4, 'dispute_withdrawn', pg_temp.public_id('dp', o.dispute_pk), o.opened_at, true),
        (o.jid + 5, 'dispute_hold', pg_temp.public_id('dp', o.dispute_pk) || ':' || o.payment_order_id, o.opened_at,
         o.returned > o.fee_part),
        (o.jid + 6, CASE o.dispute_status WHEN 'WON' THEN 'dispute_reinstated' ELSE 'dispute_lost' END,
         pg_temp.public_id('dp', o.dispute_pk), o.closed_at, o.dispute_status IN ('WON', 'LOST')),
        (o.jid + 7, 'dispute_release', pg_temp.public_id('dp', o.dispute_pk) || ':' || o.payment_order_id,
         o.closed_at, o.dispute_status = 'WON' AND o.returned > o.fee_part)
    ) AS d(id, kind, reference, at, wanted)
    WHERE o.disputed AND d.wanted
) j
"""

# The entries of those journals, line for line as wallets/services.py and wallets/returns.py post them.
_ENTRIES = """
INSERT INTO ledger_entry (journal_id, account_id, side, amount, currency, effective_at)
SELECT e.journal_id, e.account_id, e.side, e.amount, e.currency, e.at
FROM (
    -- pay-in: PSP clearing is owed the gross, the seller's pending funds get their share, the platform its fee
    SELECT o.jid + 1 AS journal_id, l.account_id, l.side, l.amount, o.currency, o.captured_at AS at
    FROM seed_order o
    CROSS JOIN LATERAL (VALUES (o.clearing_id, 'D', o.gross), (o.pending_id, 'C', o.gross - o.fee),
                               (o.fees_id, 'C', o.fee)) AS l(account_id, side, amount)
    WHERE o.captured AND l.amount > 0
    UNION ALL
    -- refund: PSP clearing pays it back, from the seller's funds and the platform's fee part
    SELECT o.jid + 2, l.account_id, l.side, l.amount, o.currency, o.refunded_at
    FROM seed_order o
    CROSS JOIN LATERAL (VALUES (o.clearing_id, 'C', o.refund_amount), (o.pending_id, 'D', o.from_pending),
                               (o.available_id, 'D', o.from_available), (o.fees_id, 'D', o.fee_part))
        AS l(account_id, side, amount)
    WHERE o.refund_amount > 0 AND l.amount > 0
    UNION ALL
    -- release: pending to available, what is left of the seller's share
    SELECT o.jid + 3, l.account_id, l.side, o.release_amount, o.currency, o.released_at
    FROM seed_order o
    CROSS JOIN LATERAL (VALUES (o.pending_id, 'D'), (o.available_id, 'C')) AS l(account_id, side)
    WHERE o.released_at IS NOT NULL AND o.release_amount > 0
    UNION ALL
    SELECT l.journal_id, l.account_id, l.side, l.amount, o.currency, l.at
    FROM seed_order o
    CROSS JOIN LATERAL (VALUES
        -- the PSP withdraws amount and fee; the seller's part is held
        (o.jid + 4, o.dispute_clearing_id, 'D', o.gross + o.dispute_fee, o.opened_at),
        (o.jid + 4, o.clearing_id, 'C', o.gross + o.dispute_fee, o.opened_at),
        (o.jid + 5, o.pending_id, 'D', o.from_pending, o.opened_at),
        (o.jid + 5, o.available_id, 'D', o.from_available, o.opened_at),
        (o.jid + 5, o.held_id, 'C', o.returned - o.fee_part, o.opened_at),
        -- won: given back, and the held part returns where it came from
        (o.jid + 6, o.clearing_id, 'D', CASE WHEN o.dispute_status = 'WON' THEN o.gross + o.dispute_fee END,
         o.closed_at),
        (o.jid + 6, o.dispute_clearing_id, 'C', CASE WHEN o.dispute_status = 'WON' THEN o.gross + o.dispute_fee END,
         o.closed_at),
        (o.jid + 7, o.held_id, 'D', CASE WHEN o.dispute_status = 'WON' THEN o.returned - o.fee_part END, o.closed_at),
        (o.jid + 7, o.pending_id, 'C', CASE WHEN o.dispute_status = 'WON' THEN o.from_pending END, o.closed_at),
        (o.jid + 7, o.available_id, 'C', CASE WHEN o.dispute_status = 'WON' THEN o.from_available END, o.closed_at),
        -- lost: the held part and the platform's fee part pay for the amount, the PSP's fee is an expense
        (o.jid + 6, o.dispute_clearing_id, 'C', CASE WHEN o.dispute_status = 'LOST' THEN o.gross + o.dispute_fee END,
         o.closed_at),
        (o.jid + 6, o.held_id, 'D', CASE WHEN o.dispute_status = 'LOST' THEN o.returned - o.fee_part END, o.closed_at),
        (o.jid + 6, o.fees_id, 'D', CASE WHEN o.dispute_status = 'LOST' THEN o.fee_part END, o.closed_at),
        (o.jid + 6, o.psp_fees_id, 'D', CASE WHEN o.dispute_status = 'LOST' THEN o.dispute_fee END, o.closed_at)
    ) AS l(journal_id, account_id, side, amount, at)
    WHERE o.disputed AND l.amount > 0
) e
"""

# Monthly payouts: at the start of each month, every wallet's available balance (if at least the payout minimum)
# is paid out whole. The balance carries from month to month (a month below the minimum, or a debt, is not paid),
# hence the recursion over months rather than one sum per month.
_PAYOUTS = """
CREATE TEMP TABLE seed_payout ON COMMIT DROP AS
WITH RECURSIVE moves AS (
    SELECT o.s, o.released_at AS at, o.release_amount AS delta FROM seed_order o
    WHERE o.released_at IS NOT NULL AND o.release_amount > 0
    UNION ALL
    SELECT o.s, o.refunded_at, -o.from_available FROM seed_order o WHERE o.refund_amount > 0 AND o.from_available > 0
    UNION ALL
    SELECT o.s, o.opened_at, -o.from_available FROM seed_order o WHERE o.disputed AND o.from_available > 0
    UNION ALL
    SELECT o.s, o.closed_at, o.from_available FROM seed_order o
    WHERE o.dispute_status = 'WON' AND o.from_available > 0
), monthly AS (
    SELECT mv.s, date_trunc('month', mv.at) AS m, sum(mv.delta) AS delta FROM moves mv GROUP BY 1, 2
), months AS (
    SELECT m, row_number() OVER (ORDER BY m) AS i
    FROM generate_series(date_trunc('month', %(start)s::timestamptz),
                         date_trunc('month', %(now)s::timestamptz - interval '3 hours') - interval '1 month',
                         interval '1 month') AS m
), flows AS (
    SELECT w.s, w.account, w.currency, w.available_id, w.reserved_id, mo.m, mo.i, coalesce(mv.delta, 0) AS delta
    FROM seed_wallet w
    CROSS JOIN months mo
    LEFT JOIN monthly mv ON mv.s = w.s AND mv.m = mo.m
), walk AS (
    SELECT f.s, f.i, f.delta AS balance FROM flows f WHERE f.i = 1
    UNION ALL
    SELECT f.s, f.i,
           f.delta + CASE WHEN w.balance >= c.payout_min THEN 0 ELSE w.balance END
    FROM walk w
    JOIN flows f ON f.s = w.s AND f.i = w.i + 1
    JOIN seed_currency c ON c.code = f.currency
)
SELECT %(payout_base)s + row_number() OVER (ORDER BY f.m, f.s) AS pk, f.s, f.account, f.currency, f.available_id,
       f.reserved_id, w.balance AS amount, f.m + interval '1 month' AS created_at,
       f.m + interval '1 month' + interval '2 hours' AS paid_at
FROM walk w
JOIN flows f ON f.s = w.s AND f.i = w.i
JOIN seed_currency c ON c.code = f.currency
WHERE w.balance >= c.payout_min
"""

_PAYOUT_ROWS = """
INSERT INTO payments_payout
    (id, payout_id, seller_account, currency, amount, payout_currency, payout_amount, destination, status,
     psp_reference, failure_code, failure_reason, attempts, actor, created_at, updated_at, paid_at)
SELECT p.pk, pg_temp.public_id('pyo', p.pk), p.account, p.currency, p.amount, p.currency, p.amount,
       'acct_' || substr(md5(p.account), 1, 16), 'PAID', pg_temp.public_id('tr', p.pk), '', '', 1, %(payout_actor)s,
       p.created_at, p.paid_at, p.paid_at
FROM seed_payout p
"""

_PAYOUT_JOURNALS = """
INSERT INTO ledger_journaltransaction (id, kind, reference, effective_at, memo, actor, created_at)
SELECT %(payout_journal_base)s + 3 * (p.pk - %(payout_base)s) + j.slot, j.kind, pg_temp.public_id('pyo', p.pk), j.at,
       '', %(payout_actor)s, j.at
FROM seed_payout p
CROSS JOIN LATERAL (VALUES (0, 'payout_reserve', p.created_at), (1, 'payout_send', p.created_at + interval '1 minute'),
                           (2, 'payout_paid', p.paid_at)) AS j(slot, kind, at);
INSERT INTO ledger_entry (journal_id, account_id, side, amount, currency, effective_at)
SELECT %(payout_journal_base)s + 3 * (p.pk - %(payout_base)s) + e.slot, e.account_id, e.side, p.amount, p.currency,
       e.at
FROM seed_payout p
JOIN seed_currency c ON c.code = p.currency
CROSS JOIN LATERAL (VALUES
    (0, p.available_id, 'D', p.created_at), (0, p.reserved_id, 'C', p.created_at),
    (1, p.reserved_id, 'D', p.created_at + interval '1 minute'),
    (1, c.payout_clearing_id, 'C', p.created_at + interval '1 minute'),
    (2, c.payout_clearing_id, 'D', p.paid_at), (2, c.clearing_id, 'C', p.paid_at)
) AS e(slot, account_id, side, at)
"""

# Wallets are the ledger's projection: computed from the entries of their accounts, as the trigger would have.
_WALLET_BALANCES = """
UPDATE wallets_wallet w
SET pending = b.pending, available = b.available, reserved = b.reserved, held = b.held, updated_at = %(now)s
FROM (
    SELECT wa.wallet_id,
           coalesce(sum(CASE e.side WHEN 'C' THEN e.amount ELSE -e.amount END) FILTER (WHERE wa.bucket = 'pending'), 0)
               AS pending,
           coalesce(sum(CASE e.side WHEN 'C' THEN e.amount ELSE -e.amount END)
                    FILTER (WHERE wa.bucket = 'available'), 0) AS available,
           coalesce(sum(CASE e.side WHEN 'C' THEN e.amount ELSE -e.amount END)
                    FILTER (WHERE wa.bucket = 'reserved'), 0) AS reserved,
           coalesce(sum(CASE e.side WHEN 'C' THEN e.amount ELSE -e.amount END) FILTER (WHERE wa.bucket = 'held'), 0)
               AS held
    FROM wallets_walletaccount wa
    JOIN seed_wallet sw ON sw.wallet_id = wa.wallet_id
    LEFT JOIN ledger_entry e ON e.account_id = wa.account_id
    GROUP BY wa.wallet_id
) b
WHERE w.id = b.wallet_id
"""

# The PSP's events as the inbox stored them: one per charge, hosted-page session, failed charge, refund, dispute.
_WEBHOOKS = """
INSERT INTO payments_webhookevent
    (id, psp, event_id, type, object_id, payload, received_at, deliveries, processed_at, attempts, next_attempt_at,
     outcome, last_error)
SELECT x.id, %(psp)s, pg_temp.public_id('evt', x.id), x.type, x.object_id,
       '{"id": "' || pg_temp.public_id('evt', x.id) || '", "type": "' || x.type
           || '", "data": {"object": {"id": "' || x.object_id || '"}}}',
       x.at, 1, CASE WHEN x.at < %(now)s - interval '1 minute' THEN x.at + interval '1 second' END, 1, NULL,
       CASE WHEN x.at < %(now)s - interval '1 minute' THEN 'applied' ELSE '' END, ''
FROM (
    SELECT %(webhook_base)s + row_number() OVER (ORDER BY y.at, y.object_id) AS id, y.*
    FROM (
        SELECT 'payment_intent.succeeded' AS type, o.psp_reference AS object_id, o.captured_at AS at
        FROM seed_order o WHERE o.captured AND (o.pos = 0 OR NOT o.hosted)
        UNION ALL
        SELECT 'checkout.session.completed', o.psp_token, o.captured_at FROM seed_order o
        WHERE o.hosted AND o.captured AND o.pos = 0
        UNION ALL
        SELECT 'payment_intent.payment_failed', o.psp_reference, o.created_at + interval '2 seconds' FROM seed_order o
        WHERE o.status = 'FAILED' AND (NOT o.hosted OR o.pos = 0)
        UNION ALL
        SELECT 'refund.created', pg_temp.public_id('re', o.refund_pk), o.refunded_at FROM seed_order o
        WHERE o.refund_amount > 0
        UNION ALL
        SELECT 'charge.dispute.created', pg_temp.public_id('dp', o.dispute_pk), o.opened_at FROM seed_order o
        WHERE o.disputed
    ) y
) x
ORDER BY x.id
"""

_DEAD_LETTERS = """
INSERT INTO payments_deadletter
    (task, object_type, object_id, attempts, last_error, first_failed_at, last_failed_at, resolved_at, resolution)
SELECT 'payments.order_execute', 'payment_order', o.payment_order_id, 8,
       'APIConnectionError: the PSP did not answer within 10 s', o.created_at + interval '1 minute',
       o.created_at + interval '31 minutes',
       CASE WHEN o.created_at < %(now)s - interval '1 day' THEN o.created_at + interval '2 hours' END,
       CASE WHEN o.created_at < %(now)s - interval '1 day' THEN 'replayed by admin:operator' ELSE '' END
FROM seed_order o WHERE mod(o.k, 10000) = 7 AND o.status <> 'PENDING'
"""

# One nightly run per settlement date; each settles what the PSP made available that day (PSP_SETTLEMENT_DELAY_DAYS
# after our records), and keeps one daily ledger check run.
_RUNS = """
INSERT INTO reconciliation_ledgercheckrun
    (started_at, finished_at, ok, violation_count, check_counts, violations, actor)
SELECT d + interval '3 hours', d + interval '3 hours 2 minutes', true, 0, %(check_counts)s::jsonb, '[]', 'schedule'
FROM generate_series(date_trunc('day', %(start)s::timestamptz) + interval '1 day', %(now)s, interval '1 day') AS d;
INSERT INTO reconciliation_reconciliationrun
    (psp, settlement_date, status, source, file_name, file_checksum, attempts, started_at, finished_at, lines_total,
     lines_malformed, malformed, counts, amounts, psp_clearing, timings, error, actor)
SELECT %(psp)s, d::date, 'SUCCEEDED', 'psp', 'settlement_' || to_char(d, 'YYYY-MM-DD') || '.csv',
       md5(d::text), 1, d + interval '1 day 3 hours', d + interval '1 day 3 hours 1 minute', 0, 0, '[]', '{}', '{}',
       '{}', '{}', '', 'schedule'
FROM generate_series(date_trunc('day', %(start)s::timestamptz) + %(delay)s * interval '1 day',
                     date_trunc('day', %(now)s::timestamptz) - interval '1 day', interval '1 day') AS d
ON CONFLICT (psp, settlement_date) DO NOTHING;
CREATE TEMP TABLE seed_run ON COMMIT DROP AS
SELECT id FROM reconciliation_reconciliationrun
WHERE psp = %(psp)s AND settlement_date >= (%(start)s::timestamptz + %(delay)s * interval '1 day')::date
"""

_SETTLED = """
INSERT INTO reconciliation_settleditem (psp, category, key, balance_transaction_id, run_id)
SELECT %(psp)s, x.category, x.key, pg_temp.txn_id(x.c, x.n), r.id
FROM (
    SELECT 'charge' AS category, 0 AS c, o.charge_n AS n, o.psp_reference AS key, o.captured_at AS at
    FROM seed_order o WHERE o.captured AND (o.pos = 0 OR NOT o.hosted)
    UNION ALL
    SELECT 'refund', 1, o.refund_pk, pg_temp.public_id('rf', o.refund_pk), o.refunded_at FROM seed_order o
    WHERE o.refund_amount > 0
    UNION ALL
    SELECT 'dispute', 2, o.dispute_pk, pg_temp.public_id('dp', o.dispute_pk), o.opened_at FROM seed_order o
    WHERE o.disputed
    UNION ALL
    SELECT 'transfer', 3, p.pk, pg_temp.public_id('pyo', p.pk), p.paid_at FROM seed_payout p
) x
JOIN reconciliation_reconciliationrun r
  ON r.psp = %(psp)s AND r.settlement_date = (x.at + %(delay)s * interval '1 day')::date
"""

# Findings on about one charge in a thousand: differences the run settled itself, others a person resolved, and the
# last month's still open in the queue; each resolution with its audit row.
_MISMATCHES = """
CREATE TEMP TABLE seed_finding ON COMMIT DROP AS
SELECT f.*,
       CASE f.category WHEN 'missing_at_psp' THEN 'item:charge:' || f.psp_reference
                       WHEN 'missing_internally' THEN 'line:txn_' || substr(md5('psp-only' || f.k), 1, 24)
                       WHEN 'duplicate_line' THEN 'line:txn_' || substr(md5('duplicate' || f.k), 1, 24)
                       ELSE 'line:' || pg_temp.txn_id(0, f.charge_n) END AS natural_key,
       CASE WHEN f.category = 'amount_difference' AND mod(f.k / 1000, 2) = 0 THEN 'auto_resolved'
            WHEN f.settlement_date >= (%(now)s - interval '30 days')::date THEN 'open'
            ELSE 'resolved' END AS finding_status,
       CASE WHEN f.category = 'amount_difference' AND mod(f.k / 1000, 2) = 0 THEN 1 + mod(f.k, 97)
            WHEN f.category = 'amount_difference' THEN 500 + mod(f.k, 5000)
            ELSE 0 END AS difference
FROM (
    SELECT o.k, o.id, o.charge_n, o.gross, o.currency, o.psp_reference, o.payment_order_id, r.id AS run_id,
           r.settlement_date,
           (ARRAY['amount_difference', 'amount_difference', 'fee_difference', 'missing_at_psp', 'missing_internally',
                  'duplicate_line', 'status_mismatch'])[mod(o.k / 1000, 7) + 1] AS category
    FROM seed_order o
    JOIN reconciliation_reconciliationrun r
      ON r.psp = %(psp)s AND r.settlement_date = (o.captured_at + %(delay)s * interval '1 day')::date
    WHERE o.captured AND o.pos = 0 AND mod(o.k, 1000) = 1
) f;
INSERT INTO reconciliation_mismatch
    (psp, natural_key, run_id, last_run_id, category, status, auto, currency, psp_amount, our_amount, difference,
     psp_line, ours, reference, resolver, note, created_at, resolved_at)
SELECT %(psp)s, f.natural_key, f.run_id, f.run_id, f.category, f.finding_status, f.finding_status = 'auto_resolved',
       f.currency,
       CASE WHEN f.category = 'missing_at_psp' THEN NULL ELSE f.gross + f.difference END,
       CASE WHEN f.category IN ('missing_internally', 'duplicate_line') THEN NULL ELSE f.gross END,
       CASE WHEN f.category IN ('missing_at_psp', 'missing_internally', 'duplicate_line') THEN NULL
            ELSE f.difference END,
       CASE WHEN f.category = 'missing_at_psp' THEN NULL
            ELSE jsonb_build_object('reporting_category', 'charge', 'key', f.psp_reference,
                                    'gross', f.gross + f.difference, 'payment_order_id', f.payment_order_id) END,
       CASE WHEN f.category IN ('missing_internally', 'duplicate_line') THEN NULL
            ELSE jsonb_build_object('category', 'charge', 'key', f.psp_reference, 'amount', f.gross,
                                    'objects', jsonb_build_array(f.payment_order_id)) END,
       -- a line for a charge we have no record of names a PaymentIntent of its own
       CASE WHEN f.category = 'missing_internally' THEN pg_temp.public_id('pi', 1099511627776 + f.id)
            ELSE f.psp_reference END,
       CASE f.finding_status WHEN 'auto_resolved' THEN 'reconciliation' WHEN 'resolved' THEN 'finance' ELSE '' END,
       CASE f.finding_status WHEN 'auto_resolved' THEN 'below the threshold: posted to reconciliation differences'
                             WHEN 'resolved' THEN 'checked with the PSP: booked correctly' ELSE '' END,
       f.settlement_date + interval '1 day 3 hours',
       CASE WHEN f.finding_status <> 'open' THEN f.settlement_date + interval '2 days 10 hours' END
FROM seed_finding f
ON CONFLICT (psp, natural_key) DO NOTHING;
INSERT INTO audit_auditentry (actor, action, object_type, object_id, reason, details, created_at)
SELECT m.resolver, 'mismatch.resolve', 'mismatch', m.id::text, m.note, '{}', m.resolved_at
FROM reconciliation_mismatch m
JOIN seed_finding f ON m.psp = %(psp)s AND m.natural_key = f.natural_key
WHERE m.status = 'resolved';
INSERT INTO audit_auditentry (actor, action, object_type, object_id, reason, details, created_at)
SELECT 'operator', 'dead_letter.replay', 'dead_letter', d.id::text, 'the PSP is answering again', '{}', d.resolved_at
FROM payments_deadletter d
JOIN seed_order o ON o.payment_order_id = d.object_id
WHERE d.resolved_at IS NOT NULL;
INSERT INTO reconciliation_adjustment
    (mismatch_id, kind, lines, memo, status, proposed_by, proposed_at, decided_by, decided_at, decision_note)
SELECT m.id, 'write_off',
       jsonb_build_array(
           jsonb_build_object('account', 'suspense:' || m.currency, 'side', 'C', 'amount', m.difference),
           jsonb_build_object('account', 'write_offs:' || m.currency, 'side', 'D', 'amount', m.difference)),
       'difference too small to chase', CASE WHEN mod(m.id, 2) = 0 THEN 'proposed' ELSE 'rejected' END,
       'operator', m.created_at + interval '1 hour',
       CASE WHEN mod(m.id, 2) = 0 THEN '' ELSE 'approver' END,
       CASE WHEN mod(m.id, 2) = 0 THEN NULL ELSE m.created_at + interval '2 hours' END,
       CASE WHEN mod(m.id, 2) = 0 THEN '' ELSE 'find the cause first' END
FROM reconciliation_mismatch m
JOIN seed_finding f ON m.psp = %(psp)s AND m.natural_key = f.natural_key
WHERE m.status = 'open' AND m.category = 'amount_difference'
"""

# Each run's counts, as the run writes them: matched lines and findings per category.
_RUN_COUNTS = """
UPDATE reconciliation_reconciliationrun r
SET counts = c.counts, lines_total = c.lines
FROM (
    SELECT x.run_id, jsonb_object_agg(x.category, x.n) AS counts, sum(x.n) AS lines
    FROM (
        SELECT si.run_id, 'matched' AS category, count(*) AS n
        FROM reconciliation_settleditem si
        WHERE si.run_id IN (SELECT id FROM seed_run)
        GROUP BY si.run_id
        UNION ALL
        SELECT m.run_id, m.category, count(*) FROM reconciliation_mismatch m
        WHERE m.run_id IN (SELECT id FROM seed_run)
        GROUP BY m.run_id, m.category
    ) x
    GROUP BY x.run_id
) c
WHERE r.id = c.run_id
"""

_IDEMPOTENCY = """
INSERT INTO api_idempotencykey
    (client_id, key, request_fingerprint, request_path, response_status, response_body, created_at, expires_at)
SELECT %(client)s, 'idem_' || p.id, md5('payment' || p.id) || md5('body' || p.id), '/v1/payments', 201,
       '{"payment_id": "' || pg_temp.public_id('pay', p.id) || '"}', p.created_at, p.created_at + interval '1 day'
FROM seed_payment p WHERE p.created_at > %(now)s - interval '1 day'
ON CONFLICT DO NOTHING
"""


def _max_id(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT coalesce(max(id), 0) FROM {table}")  # noqa: S608 - a table name of ours
        return int(cursor.fetchone()[0])


def _house_accounts(currencies: list[str]) -> dict[str, list[int]]:
    """The platform's accounts per currency (created as the services create them), ids in ``currencies`` order."""
    kinds: dict[str, Callable[[str], AccountRef]] = {
        "clearing": psp_clearing_account,
        "fees": platform_fees_account,
        "psp_fees": psp_fees_account,
        "dispute_clearing": dispute_clearing_account,
        "payout_clearing": payout_clearing_account,
    }
    refs = {kind: [make(code) for code in currencies] for kind, make in kinds.items()}
    ids = accounts_ensure(accounts=[ref for group in refs.values() for ref in group])
    return {kind: [ids[ref.code] for ref in group] for kind, group in refs.items()}


def _fees_agree() -> None:
    """The fee computed in SQL must be wallets.fees.platform_fee's, the one rule: compared on a sample of orders."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT gross, currency, fee FROM seed_order WHERE captured ORDER BY k LIMIT 2000")
        for gross, currency, fee in cursor.fetchall():
            if platform_fee(gross, currency) != fee:
                raise ValueError(
                    f"fee on {gross} {currency}: {fee} in SQL, {platform_fee(gross, currency)} by the rule"
                )


def _client() -> ApiClient:
    client = ApiClient.objects.filter(name=CLIENT_NAME).first()
    return client if client is not None else api_client_create(name=CLIENT_NAME).client


def _parameters(*, payments: int, sellers: int, days: int, seed: int, now: datetime) -> dict[str, Any]:
    currencies = sorted(set(SELLER_CURRENCIES))
    missing = [code for code in currencies if code not in settings.PAYMENT_CURRENCIES]
    if missing:
        raise ValueError(f"seed_volume sells in {', '.join(currencies)}; PAYMENT_CURRENCIES lacks {', '.join(missing)}")
    house = _house_accounts(currencies)
    # The fee rule lives in wallets.fees; SQL computes it from the same two settings per currency, and the load
    # compares a sample with the rule itself (``_fees_agree``).
    fee_pct = [
        settings.PLATFORM_FEE_PERCENT_BY_CURRENCY.get(code, settings.PLATFORM_FEE_PERCENT) for code in currencies
    ]
    fee_fixed = [int(settings.PLATFORM_FEE_FIXED.get(code, 0)) for code in currencies]
    minimum = {
        code: int(
            settings.PAYOUT_MINIMUM_BY_CURRENCY.get(code, settings.PAYOUT_MINIMUM) * 10 ** minor_unit_exponent(code)
        )
        for code in currencies
    }
    start = now - timedelta(days=days)
    return {
        "seed": (seed % 1000) / 1000,
        "payments": payments,
        "sellers": sellers,
        "start": start,
        "now": now,
        "seconds_per_payment": days * 86400 / payments,
        "codes": currencies,
        "exps": [minor_unit_exponent(code) for code in currencies],
        "fee_pct": fee_pct,
        "fee_fixed": fee_fixed,
        "payout_min": [minimum[code] for code in currencies],
        "clearing": house["clearing"],
        "fees": house["fees"],
        "psp_fees": house["psp_fees"],
        "dispute_clearing": house["dispute_clearing"],
        "payout_clearing": house["payout_clearing"],
        "seller_currencies": SELLER_CURRENCIES,
        "fee_refunded": settings.PLATFORM_FEE_ON_REFUND == "refunded",
        "hold": settings.FUNDS_HOLD_DAYS,
        "delay": settings.PSP_SETTLEMENT_DELAY_DAYS,
        "psp": settings.PAYMENT_PSP,
        "dispute_fee": DISPUTE_FEE,
        "sandbox": f"http://127.0.0.1:{settings.STRIPE_SANDBOX_PORT}",
        "payout_actor": PAYOUT_SCHEDULE_ACTOR,
        "check_counts": json.dumps(dict.fromkeys(CHECKS, 0)),
    }


def volume_seed(
    *, payments: int, sellers: int, days: int, seed: int, report: Callable[[Step], None] = lambda step: None
) -> list[Step]:
    """Load the data set described above in one transaction, then VACUUM ANALYZE what it wrote. Returns the steps
    with their row counts and times; ``report`` is called after each one."""
    if sellers < 20 or sellers % 10 or sellers > 99_990:
        raise ValueError("sellers: a multiple of 10 from 20 to 99,990")
    steps: list[Step] = []

    def run(name: str, sql: str, params: dict[str, Any]) -> None:
        started = time.monotonic()
        rows = 0
        with connection.cursor() as cursor:
            for statement in sql.split(";\n"):
                cursor.execute(statement, params)
                rows += max(cursor.rowcount, 0) if statement.lstrip().upper().startswith(("INSERT", "UPDATE")) else 0
        steps.append(Step(name, rows, time.monotonic() - started))
        report(steps[-1])

    # The API client and the platform's accounts first, through their services (each commits on its own).
    params = _parameters(payments=payments, sellers=sellers, days=days, seed=seed, now=timezone.now())
    params["client"] = _client().pk
    with transaction.atomic(durable=True):
        bases = {table: _max_id(table) for table in EXPLICIT_IDS}
        params |= {
            "payment_base": bases["payments_paymentevent"],
            "order_base": bases["payments_paymentorder"],
            "refund_base": bases["payments_refund"],
            "dispute_base": bases["payments_dispute"],
            "payout_base": bases["payments_payout"],
            "journal_base": bases["ledger_journaltransaction"],
            "webhook_base": bases["payments_webhookevent"],
            "payout_journal_base": bases["ledger_journaltransaction"] + 8 * (2 * payments + 1),
        }
        run("set-up", _SETUP, params)
        started = time.monotonic()
        with connection.cursor() as cursor:
            cursor.execute(_SECONDARY_INDEXES, {"tables": REBUILT_INDEXES_ON})
            indexes = cursor.fetchall()
            for name, _ in indexes:
                cursor.execute(f"DROP INDEX {name}")
        steps.append(Step(f"drop {len(indexes)} secondary indexes", 0, time.monotonic() - started))
        report(steps[-1])
        run("sellers", _SELLERS, params)
        run("wallets", _WALLETS, params)
        run("wallet accounts", _WALLET_ACCOUNTS, params)
        run("plan: payments", _PLAN_PAYMENTS, params)
        run("plan: orders", _PLAN_ORDERS, params)
        _fees_agree()
        run("payments", _PAYMENTS, params)
        run("orders", _ORDERS, params)
        run("order transitions", _TRANSITIONS, params)
        run("refunds", _REFUNDS, params)
        run("disputes and allocations", _DISPUTES, params)
        run("journal transactions", _JOURNALS, params)
        run("ledger entries", _ENTRIES, params)
        run("plan: payouts", _PAYOUTS, params)
        run("payouts", _PAYOUT_ROWS, params)
        run("payout journals and entries", _PAYOUT_JOURNALS, params)
        run("wallet balances", _WALLET_BALANCES, params)
        run("webhook events", _WEBHOOKS, params)
        run("dead letters", _DEAD_LETTERS, params)
        run("ledger check and reconciliation runs", _RUNS, params)
        run("settled items", _SETTLED, params)
        run("findings, adjustments, audit", _MISMATCHES, params)
        run("run counts", _RUN_COUNTS, params)
        run("idempotency keys", _IDEMPOTENCY, params)
        started = time.monotonic()
        with connection.cursor() as cursor:
            for _, definition in indexes:
                cursor.execute(definition)
        steps.append(Step(f"rebuild {len(indexes)} secondary indexes", 0, time.monotonic() - started))
        report(steps[-1])
        with connection.cursor() as cursor:
            for table in EXPLICIT_IDS:
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"  # noqa: S608
                )
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM (ANALYZE) {', '.join(LOADED_TABLES)}")
    steps.append(Step("vacuum analyze", 0, time.monotonic() - started))
    report(steps[-1])
    return steps
