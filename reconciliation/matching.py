"""Matching a staged settlement file against our books: set-based, in SQL (a join, not a Python loop).

Statements over whole tables, each once per run:
1. ``LINES``: the staged text becomes typed lines (amounts in minor units by each currency's exponent); a value that
   is not a decimal, has more decimals than its currency, names an unknown currency, or whose parts do not add up
   (net = gross - fee) marks the line malformed (``MALFORMED``). Lines a previous run settled leave the run
   (``SETTLED_BEFORE``), and the repeated ones are marked (``DUPLICATE_COPIES``).
2. ``RESULTS``: every line left FULL OUTER JOIN every item of ours not settled before, on (category, key, currency),
   classified in one CASE. The items of ours are what each of our records should have made the PSP book: a captured
   charge (one per PSP charge: a hosted-page charge pays several orders), a refund, a refund that failed after it was
   made, a paid transfer, a dispute's withdrawal and its reversal.
3. The aggregates for the run's counts, amounts and settlement posting, from ``RESULTS``.

What is compared: the gross, except for disputes, where our books already hold the PSP's dispute fee (it was
withdrawn with the amount), so the net is compared and the fee is not booked again at settlement.
"""

from __future__ import annotations

from decimal import Decimal

from payments.models import CAPTURED_STATUSES

CAPTURED = sorted(status.value for status in CAPTURED_STATUSES)

# The key each report category is matched on: what the PSP knows of ours (metadata) or its own id we stored. An
# amount is a decimal with at most its currency's decimal places: one regular expression per currency says both
# (built once per currency, as its factor), so a value is parsed as a number once, to be scaled, not three times.
# The lines keep only what matching reads; the ids a finding shows stay in the staging table (DETAILS).
LINES = """
CREATE UNLOGGED TABLE {lines} AS
SELECT t.*, 1 AS copy, false AS duplicate FROM (
SELECT s.line_no, s.balance_transaction_id AS txn, s.reporting_category AS category,
       nullif(CASE s.reporting_category
           WHEN 'charge' THEN s.payment_intent_id
           WHEN 'refund' THEN s.refund_id
           WHEN 'refund_failure' THEN s.refund_id
           WHEN 'transfer' THEN s.payout_id
           WHEN 'dispute' THEN s.source_id
           WHEN 'dispute_reversal' THEN s.source_id
       END, '') AS key,
       upper(s.currency) AS currency,
       CASE WHEN s.gross ~ ex.decimal THEN (s.gross::numeric * ex.factor)::bigint END AS gross,
       CASE WHEN s.fee ~ ex.decimal THEN (s.fee::numeric * ex.factor)::bigint END AS fee,
       CASE WHEN s.net ~ ex.decimal THEN (s.net::numeric * ex.factor)::bigint END AS net,
       ex.exp IS NULL AS currency_unknown
FROM ({split}) s
LEFT JOIN (
    SELECT currency, exp, power(10::numeric, exp) AS factor,
           '^-?[0-9]+' || CASE WHEN exp > 0 THEN '(\\.[0-9]{{1,' || exp || '}})?' ELSE '' END || '$' AS decimal
    FROM unnest(%(currencies)s::text[], %(exponents)s::int[]) AS ex(currency, exp)
) ex ON ex.currency = upper(s.currency)
) t
"""

MALFORMED = """
DELETE FROM {lines}
WHERE currency_unknown OR gross IS NULL OR fee IS NULL OR net IS NULL OR net <> gross - fee OR txn = ''
RETURNING line_no,
          CASE WHEN currency_unknown THEN 'unknown currency'
               WHEN gross IS NULL OR fee IS NULL OR net IS NULL
                   THEN 'gross, fee and net must be decimals with at most the currency''s decimal places'
               WHEN txn = '' THEN 'no balance_transaction_id'
               ELSE 'net is not gross - fee' END
"""

# Our items not yet settled. booked_at: when our books recorded the movement, which decides whether its absence from
# the file is timing or missing at the PSP. What each item is made of (a charge's orders) is not carried here: only the
# findings show it, and MISMATCHES looks it up for those few; an ordered aggregate over every captured order sorted
# them all, at every run. The charges come first (OURS), the others after (OURS_OTHER).
OURS_OTHER = """
SELECT 'refund' AS category, r.refund_id AS key, r.currency, -r.amount AS amount, r.created_at AS booked_at
FROM payments_refund r
WHERE r.status <> 'FAILED' OR r.psp_reference <> ''
UNION ALL
SELECT 'refund_failure', r.refund_id, r.currency, r.amount, r.updated_at
FROM payments_refund r
WHERE r.status = 'FAILED' AND r.psp_reference <> ''
UNION ALL
SELECT 'transfer', p.payout_id, p.payout_currency, -p.payout_amount, p.paid_at
FROM payments_payout p
WHERE p.status = 'PAID'
UNION ALL
SELECT 'dispute', d.psp_dispute_id, d.currency, -(d.amount + d.fee), d.opened_at
FROM payments_dispute d
UNION ALL
SELECT 'dispute_reversal', d.psp_dispute_id, d.currency, d.amount + d.fee, d.closed_at
FROM payments_dispute d
WHERE d.status = 'WON'
"""

OURS = """
SELECT 'charge' AS category, o.psp_reference COLLATE "C" AS key, o.amount_currency AS currency,
       sum((o.amount * power(10::numeric, ex.exp))::bigint)::bigint AS amount, max(o.captured_at) AS booked_at
FROM payments_paymentorder o
JOIN unnest(%(currencies)s::text[], %(exponents)s::int[]) AS ex(currency, exp) ON ex.currency = o.amount_currency
WHERE o.status = ANY(%(captured)s) AND o.psp_reference <> ''
GROUP BY o.psp_reference COLLATE "C", o.amount_currency
UNION ALL
{ours_other}""".replace("{ours_other}", OURS_OTHER)

# A line whose balance transaction a previous run settled is not this run's (the same line in a later file, a file
# run again): it is neither matched nor a finding.
SETTLED_BEFORE = """
DELETE FROM {lines} l
WHERE EXISTS (
    SELECT 1 FROM reconciliation_settleditem si WHERE si.psp = %(psp)s AND si.balance_transaction_id = l.txn
)
"""

# A line repeating an earlier one's balance transaction, or its key (the same charge settled twice), is a duplicate:
# ``copy`` numbers the repetitions of a balance transaction (the finding's natural key), and a duplicate matches
# nothing. The repeated balance transactions and keys are found by their 64-bit hashes, the two kinds in one sort
# (a hash repeated is one equal to the previous in order; a collision, between any two, only adds a line to those
# numbered, by their exact values), and only those few lines are numbered: numbering every line sorted the whole table
# twice, once per window, and a hash aggregate per kind (a million groups each) took twice the sort's time.
# DUPLICATE_COPIES reads them (runs.py), DUPLICATES_MARK marks them: as one UPDATE ... FROM, the join with the lines was
# planned from the hash filter's guess (a quarter of the table), and sorted the whole table to merge with a thousand.
DUPLICATE_COPIES = """
WITH repeated AS (
    SELECT h FROM (
        SELECT h, lag(h) OVER (ORDER BY h) AS previous
        FROM (SELECT hashtextextended(txn, 0) AS h FROM {lines}
              UNION ALL
              SELECT hashtextextended(category || ':' || key, 1) FROM {lines} WHERE key IS NOT NULL) hashes
    ) sorted
    WHERE h = previous
)
SELECT line_no, txn_n FROM (
    SELECT r.line_no,
           row_number() OVER (PARTITION BY r.txn ORDER BY r.line_no) AS txn_n,
           CASE WHEN r.key IS NULL THEN 1
                ELSE row_number() OVER (PARTITION BY r.category, r.key ORDER BY r.line_no) END AS key_n
    FROM {lines} r
    WHERE hashtextextended(r.txn, 0) IN (SELECT h FROM repeated)
       OR (r.key IS NOT NULL AND hashtextextended(r.category || ':' || r.key, 1) IN (SELECT h FROM repeated))
) d
WHERE d.txn_n > 1 OR d.key_n > 1
"""

DUPLICATES_MARK = """
UPDATE {lines} l
SET copy = d.copy, duplicate = true
FROM unnest(%(lines)s::int[], %(copies)s::int[]) AS d(line_no, copy)
WHERE l.line_no = d.line_no
"""

# A duplicate joins nothing (ours are never duplicates: a key of the join, which costs the hash table a byte where a
# second copy of the key cost it a column) and is its own finding. What else a line says (its source and
# metadata ids) is left out, and DETAILS copies it for the few lines that become findings or are applied from the
# PSP's side (MISMATCHES, PSP_ONLY): carried through the lines and here, it doubled the width of the join's hash
# table, a million entries, and of the tables written.
# The captured orders are grouped into charges in key order (sorted, runs.py switching the hash aggregate off for this
# statement), and drive the join, so the results come out in key order, which SETTLE_ITEMS inserts them in; grouped
# in a hash table, they came out at random and had to be sorted again there.
RESULTS = """
CREATE UNLOGGED TABLE {results} AS
WITH candidates AS (
    SELECT l.*, CASE WHEN l.category IN ('dispute', 'dispute_reversal') THEN l.net ELSE l.gross END AS compared
    FROM {lines} l
), ours AS (
    SELECT o.*, false AS duplicate FROM ({ours}) o
    WHERE NOT EXISTS (
        SELECT 1 FROM reconciliation_settleditem si
        WHERE si.psp = %(psp)s AND si.category = o.category AND si.key = o.key
    )
)
SELECT c.line_no, c.txn, coalesce(c.category, o.category) AS category,
       coalesce(c.key, o.key) COLLATE "default" AS key,
       coalesce(c.currency, o.currency) AS currency, c.gross, c.fee, c.net, c.compared AS psp_amount,
       o.amount AS our_amount, o.booked_at, o.key IS NOT NULL AS ours_found,
       CASE
           WHEN c.duplicate THEN 'duplicate_line'
           WHEN c.txn IS NOT NULL AND o.key IS NOT NULL THEN
               CASE WHEN c.compared <> o.amount THEN 'amount_difference'
                    WHEN c.category = 'charge'
                         AND c.fee <> least(round(c.gross * %(fee_percent)s / 100) + %(fee_fixed)s, c.gross)
                        THEN 'fee_difference'
                    ELSE 'matched' END
           WHEN c.txn IS NOT NULL THEN 'psp_only'
           WHEN o.booked_at > %(window_start)s THEN 'timing'
           ELSE 'missing_at_psp'
       END AS result,
       coalesce(c.copy, 1) AS copy
FROM candidates c
FULL OUTER JOIN ours o
    ON o.category = c.category AND o.key = c.key AND o.currency = c.currency AND o.duplicate = c.duplicate
WHERE c.txn IS NOT NULL OR o.booked_at <= %(cutoff)s
""".replace("{ours}", OURS)

# The lines not simply matched, with what else they say, from the staged file. Its own small table: joined with the
# lines themselves, the results (no statistics: just written) were planned as the larger side, and the lines hashed
# whole to find a few.
DETAILS = """
CREATE UNLOGGED TABLE {details} AS
SELECT s.line_no, s.source_id, s.payment_intent_id, s.payment_order_id, s.payment_id, s.refund_id, s.payout_id
FROM ({split}) s
WHERE s.line_no IN (SELECT line_no FROM {results} WHERE result <> 'matched' AND line_no IS NOT NULL)
"""

# What the PSP still owes us by our records, per currency: our items it has not settled yet.
# The charges are summed order by order (a charge's amount is its orders'), each order's charge looked up among the
# settled items: grouping every captured order by its charge first, as the matching must, cost seconds here for a
# total that is the same.
OUTSTANDING = """
SELECT o.currency, sum(o.amount)
FROM (
    SELECT 'charge' AS category, o.psp_reference AS key, o.amount_currency AS currency,
           (o.amount * power(10::numeric, ex.exp))::bigint AS amount
    FROM payments_paymentorder o
    JOIN unnest(%(currencies)s::text[], %(exponents)s::int[]) AS ex(currency, exp) ON ex.currency = o.amount_currency
    WHERE o.status = ANY(%(captured)s) AND o.psp_reference <> ''
    UNION ALL
    SELECT category, key, currency, amount FROM ({ours_other}) other
) o
WHERE NOT EXISTS (
    SELECT 1 FROM reconciliation_settleditem si WHERE si.psp = %(psp)s AND si.category = o.category AND si.key = o.key
)
GROUP BY o.currency
""".replace("{ours_other}", OURS_OTHER)

TOTALS = """
SELECT result, currency, count(*), coalesce(sum(psp_amount), 0), coalesce(sum(our_amount), 0)
FROM {results}
GROUP BY result, currency
"""

# What the settlement posting needs per currency: the bank payout (sum of net over every line of the file), the
# fees not already in our books, and how much of the gross our books accounted for.
SETTLEMENT = """
SELECT currency,
       coalesce(sum(net), 0) AS net,
       coalesce(sum(fee) FILTER (WHERE category NOT IN ('dispute', 'dispute_reversal')), 0) AS fees,
       coalesce(sum(our_amount) FILTER (WHERE result = ANY(%(accounted)s)), 0) AS ours,
       coalesce(sum(psp_amount - our_amount) FILTER (
           WHERE result = 'amount_difference' AND abs(psp_amount - our_amount) <= th.threshold), 0) AS auto_difference
FROM {results}
LEFT JOIN unnest(%(currencies)s::text[], %(thresholds)s::bigint[]) AS th(code, threshold) ON th.code = currency
WHERE txn IS NOT NULL
GROUP BY currency
"""

# In key order, the primary key's own ("C", models.SettledItem), as the results come (see RESULTS): the index then
# takes its entries a leaf page after the other, instead of at random all over it. No ORDER BY: the order only makes
# this faster, never different, and sorting the million rows again cost a second (spilling to disk).
# A plain INSERT, not ON CONFLICT DO NOTHING, whose speculative insertion probes the primary key before writing
# each row (it nearly doubled this statement's time): a matched line and its item were found unsettled by RESULTS, in
# this transaction, so they cannot be settled already; only a line the run applied from the PSP's side may name an
# item a previous run settled (a second line for it: this one is a finding), and those few were looked up in the
# PSP-only step (PSP_ONLY_SETTLED: here, the lookup ran as the items were written, each one reading them all). Should a
# concurrent run of another date settle the same item meanwhile, the primary key fails this run, which is retried,
# rather than relieving PSP clearing twice for one item.
SETTLE_ITEMS = """
INSERT INTO reconciliation_settleditem (psp, category, key, balance_transaction_id, run_id)
SELECT %(psp)s, r.category, r.key, r.txn, %(run)s
FROM {results} r
WHERE r.result = ANY(%(accounted)s) AND r.key IS NOT NULL AND r.settled_before IS NOT TRUE
"""

# Findings for people (and the auto-resolved ones, as evidence). A line is known by its balance transaction (a
# repeated one by its copy's number too: the first copy has a finding of its own, or none), an item of ours alone by
# its key, so a timing finding becomes missing-at-PSP in a later run, or is auto-resolved when its line arrives; a
# finding a person closed is never reopened.
MISMATCHES = """
INSERT INTO reconciliation_mismatch AS m
    (psp, natural_key, run_id, last_run_id, category, status, auto, currency, psp_amount, our_amount, difference,
     psp_line, ours, reference, resolver, note, created_at, resolved_at)
SELECT %(psp)s,
       CASE WHEN r.txn IS NULL THEN 'item:' || r.category || ':' || r.key
            WHEN r.copy > 1 THEN 'line:' || r.txn || '#' || r.copy
            ELSE 'line:' || r.txn END,
       %(run)s, %(run)s, r.result,
       CASE WHEN r.auto_note IS NOT NULL
                 OR (r.result = 'amount_difference' AND abs(r.psp_amount - r.our_amount) <= th.threshold)
            THEN 'auto_resolved' ELSE 'open' END,
       r.auto_note IS NOT NULL
           OR (r.result = 'amount_difference' AND abs(r.psp_amount - r.our_amount) <= th.threshold),
       r.currency, r.psp_amount, r.our_amount, r.psp_amount - r.our_amount,
       CASE WHEN r.txn IS NULL THEN NULL ELSE jsonb_build_object(
           'line', r.line_no, 'balance_transaction_id', r.txn, 'reporting_category', r.category, 'key', r.key,
           'gross', r.gross, 'fee', r.fee, 'net', r.net, 'source_id', l.source_id,
           'payment_intent_id', l.payment_intent_id, 'payment_order_id', l.payment_order_id,
           'payment_id', l.payment_id, 'refund_id', l.refund_id, 'payout_id', l.payout_id) END,
       CASE WHEN r.our_amount IS NULL THEN NULL ELSE jsonb_build_object(
           'category', r.category, 'key', r.key, 'amount', r.our_amount, 'booked_at', r.booked_at,
           'objects', CASE WHEN NOT r.ours_found THEN NULL
                           WHEN r.category <> 'charge' THEN jsonb_build_array(r.key)
                           ELSE (SELECT jsonb_agg(o.payment_order_id ORDER BY o.position)
                                 FROM payments_paymentorder o
                                 WHERE o.psp_reference = r.key AND o.psp_reference <> ''
                                   AND o.amount_currency = r.currency AND o.status = ANY(%(captured)s)) END) END,
       coalesce(r.key, nullif(l.source_id, ''), ''),
       CASE WHEN r.auto_note IS NOT NULL
                 OR (r.result = 'amount_difference' AND abs(r.psp_amount - r.our_amount) <= th.threshold)
            THEN 'reconciliation' ELSE '' END,
       coalesce(r.auto_note, CASE WHEN r.result = 'amount_difference'
                                       AND abs(r.psp_amount - r.our_amount) <= th.threshold
                                  THEN 'below the threshold: posted to reconciliation differences' END, ''),
       now(),
       CASE WHEN r.auto_note IS NOT NULL
                 OR (r.result = 'amount_difference' AND abs(r.psp_amount - r.our_amount) <= th.threshold)
            THEN now() END
FROM {results} r
LEFT JOIN {details} l ON l.line_no = r.line_no
LEFT JOIN unnest(%(currencies)s::text[], %(thresholds)s::bigint[]) AS th(code, threshold) ON th.code = r.currency
WHERE r.result NOT IN ('matched', 'psp_only')
ON CONFLICT (psp, natural_key) DO UPDATE
    SET last_run_id = excluded.last_run_id, category = excluded.category, our_amount = excluded.our_amount,
        psp_amount = excluded.psp_amount, difference = excluded.difference
    WHERE m.status = 'open'
"""

# Findings about an item of ours alone (timing) whose line has now arrived and matched. ``open_items`` are the open
# findings' natural keys that name an item (runs.py reads them first: few, whatever the size of the file), so the
# results are read once, each key looked up in a hash of them; a join of the findings with the results could not be
# planned well, the findings' statistics never knowing the ones the run has just written (a nested loop over both).
OPEN_ITEMS = """
SELECT natural_key FROM reconciliation_mismatch WHERE psp = %(psp)s AND status = 'open' AND natural_key LIKE 'item:%%'
"""

CARRIED_RESOLVED = """
UPDATE reconciliation_mismatch m
SET status = 'auto_resolved', auto = true, last_run_id = %(run)s, resolved_at = now(), resolver = 'reconciliation',
    note = 'its settlement line arrived in the run of ' || %(date)s
WHERE m.psp = %(psp)s AND m.status = 'open' AND m.natural_key = ANY(ARRAY(
    SELECT 'item:' || r.category || ':' || r.key
    FROM {results} r
    WHERE r.txn IS NOT NULL AND r.result = ANY(%(accounted)s)
      AND 'item:' || r.category || ':' || r.key = ANY(%(open_items)s::text[])
))
"""

PSP_ONLY = """
SELECT r.line_no, r.txn, r.category, r.key, r.currency, r.gross, r.fee, r.net, r.psp_amount, l.source_id,
       l.payment_intent_id, l.payment_order_id, l.payment_id, l.refund_id, l.payout_id
FROM {results} r
JOIN {details} l ON l.line_no = r.line_no
WHERE r.result = 'psp_only'
ORDER BY r.line_no
"""

# What was done with each of those lines (runs._settle_psp_only), all at once; and whether one applied from the PSP's
# side names an item a previous run settled (SETTLE_ITEMS), looked up here, before any item of this run is written.
PSP_ONLY_SETTLED = """
UPDATE {results} r
SET result = s.category, auto_note = s.note, our_amount = CASE WHEN s.accounted THEN r.psp_amount END,
    settled_before = s.accounted AND EXISTS (
        SELECT 1 FROM reconciliation_settleditem si
        WHERE si.key = r.key AND si.category = r.category AND si.psp = %(psp)s
    )
FROM unnest(%(txns)s::text[], %(categories)s::text[], %(notes)s::text[], %(accounted)s::boolean[])
    AS s(txn, category, note, accounted)
WHERE r.txn = s.txn AND r.result = 'psp_only'
"""


def fee_parameters(percent: Decimal, fixed: int) -> dict[str, object]:
    return {"fee_percent": percent, "fee_fixed": fixed}
