"""The finance console on a production-sized data set: every page's server time and SQL queries.

What runs
    In a database of its own (``<name>_bench_admin``, recreated at the start unless ``--keep-data``), migrated, then
    loaded by ``manage.py seed_volume --payments N`` (1,000,000 by default: 2,000,000 orders and their ledger, see
    console/volume.py), which also runs the ledger checks on what it loaded. Then, in this process (Django's test
    client, production settings: DEBUG off), as a superuser and as a "finance viewer", it requests:

    - the admin index and every registered model's changelist;
    - each changelist with each of its filters applied (the first and the last choice each filter offers), and with
      a search for an id of the kind its search box takes;
    - the payment search (the console's one box) for each kind of id: payment_id, payment_order_id, pi_, cs_, re_,
      rf_, txn_, dp_, buyer id, seller account, checkout id;
    - a payment's story page (a disputed one and a refunded one), an order's page, a run's findings, the trial
      balance (now and as of a date), an account's page and its entries (a seller's account and the PSP clearing
      account every pay-in posts to), a wallet's page.

What is measured
    A page's server time is the time Django takes to answer it in this process (middleware, view, queries,
    template; no network): one warm-up request, then the median of ``--repeat`` requests. A further request runs
    under CaptureQueriesContext: the number of SQL queries, the slowest one, and each query's plan (EXPLAIN, not
    run), in which any sequential scan of a big table (over 100,000 rows) is flagged. A page taking 1 s or more is
    flagged too (SLOW), and the summary counts the pages under 110 ms and under 1 s and names the five slowest.

Prints one line per page (superuser and viewer times, queries, their total and the slowest one's time, flags), then
each flagged page's slowest query and the big tables it scans. ``--json FILE`` writes the figures for comparison
between runs; ``--keep-data`` measures the data an earlier run loaded, ``--only REGEX`` some pages.

Needs DATABASE_URL, REDIS_URL and SECRET_KEY in the environment (``make bench-admin`` provides them).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's folder comes first on sys.path, and its neighbours (ledger.py, api.py) would shadow
# the apps of the same names. The project's root takes its place.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(ROOT)

from bench.harness import BenchError, bench_database_urls, bench_ready, positive, recreate_database  # noqa: E402

DB_SUFFIX = "_bench_admin"
SLOW_SECONDS = 1.0  # a page at or over this is flagged SLOW
FAST_SECONDS = 0.110  # the summary counts the pages under this too
BIG_TABLE_ROWS = 100_000
ADMIN_USER = "bench_admin"
VIEWER_USER = "bench_viewer"
VIEWER_GROUP = "finance viewer"


@dataclass
class Page:
    name: str
    url: str


@dataclass
class Result:
    name: str
    url: str
    seconds: dict[str, float | None] = field(default_factory=dict)  # per user; None: refused (403) or failed
    status: dict[str, int] = field(default_factory=dict)
    queries: int = 0
    sql_ms: float = 0.0  # all the page's queries, as Django timed them
    slowest_ms: float = 0.0
    slowest_sql: str = ""
    seq_scans: list[str] = field(default_factory=list)  # "table (rows)" of big tables scanned whole
    error: str = ""

    @property
    def flags(self) -> list[str]:
        found = []
        if any(s is not None and s >= SLOW_SECONDS for s in self.seconds.values()):
            found.append("SLOW")
        if self.seq_scans:
            found.append("SEQSCAN " + ", ".join(sorted(set(self.seq_scans))))
        if self.error:
            found.append("ERROR")
        return found


# --- Set-up ----------------------------------------------------------------------------------------------------------


def use_bench_database(bench_url: str) -> None:
    os.environ["DATABASE_URL"] = bench_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ["LOG_LEVEL"] = "WARNING"
    # DEBUG would make Django keep every query and render debug pages: not what production runs.
    os.environ.pop("DEBUG", None)


def manage(*args: str) -> None:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=dict(os.environ), check=False)
    if result.returncode != 0:
        raise BenchError(f"manage.py {' '.join(args)} failed with exit code {result.returncode}")


def users() -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    model = get_user_model()
    admin, _ = model.objects.update_or_create(
        username=ADMIN_USER, defaults={"is_staff": True, "is_superuser": True, "is_active": True}
    )
    viewer, _ = model.objects.update_or_create(
        username=VIEWER_USER, defaults={"is_staff": True, "is_superuser": False, "is_active": True}
    )
    viewer.groups.set(Group.objects.filter(name=VIEWER_GROUP))
    return {"admin": admin, "viewer": viewer}


def sample(sql: str, *params: object) -> Any:
    """The first row of a query: the data set must have one."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        raise BenchError(f"the data set has no row for: {sql.strip()[:120]}")
    return row


@dataclass(frozen=True)
class Ids:
    payment_pk: int
    payment_id: str
    checkout_id: str
    buyer_id: str
    order_pk: int
    payment_order_id: str
    psp_reference: str
    seller: str
    hosted_token: str
    refund_payment_pk: int
    refund_id: str
    refund_reference: str
    dispute_payment_pk: int
    dispute_id: str
    txn: str
    payout_id: str
    run_pk: int
    seller_account_pk: int
    clearing_account_pk: int
    seller_account_code: str
    clearing_account_code: str
    wallet_pk: int
    audit_object_id: str
    idempotency_key: str


# Rows from the middle of their tables (by id): neither the first nor the newest.
_PAYMENT = """
SELECT id, payment_id, checkout_id, buyer_id FROM payments_paymentevent
WHERE id >= (SELECT (min(id) + max(id)) / 2 FROM payments_paymentevent) ORDER BY id LIMIT 1
"""
_ORDER = """
SELECT id, payment_order_id, psp_reference, seller_account FROM payments_paymentorder
WHERE event_id = %s ORDER BY position LIMIT 1
"""
_HOSTED = """
SELECT psp_token FROM payments_paymentorder
WHERE psp_token <> '' AND id >= (SELECT (min(id) + max(id)) / 2 FROM payments_paymentorder) ORDER BY id LIMIT 1
"""
_REFUND = """
SELECT o.event_id, r.refund_id, r.psp_reference FROM payments_refund r
JOIN payments_paymentorder o ON o.id = r.order_id
WHERE r.id >= (SELECT (min(id) + max(id)) / 2 FROM payments_refund) ORDER BY r.id LIMIT 1
"""
_DISPUTE = """
SELECT o.event_id, d.psp_dispute_id FROM payments_disputeallocation a
JOIN payments_dispute d ON d.id = a.dispute_id
JOIN payments_paymentorder o ON o.id = a.order_id
WHERE d.status = 'LOST' AND a.id >= (SELECT (min(id) + max(id)) / 2 FROM payments_disputeallocation)
ORDER BY a.id LIMIT 1
"""
# Settled items have no id (their key is their primary key): the middle captured order's charge, or the next in key
# order.
_TXN = """
SELECT balance_transaction_id FROM reconciliation_settleditem
WHERE category = 'charge' AND key >= (
    SELECT psp_reference FROM payments_paymentorder
    WHERE psp_reference <> '' AND id >= (SELECT (min(id) + max(id)) / 2 FROM payments_paymentorder)
    ORDER BY id LIMIT 1
)
ORDER BY key LIMIT 1
"""
_PAYOUT = """
SELECT payout_id FROM payments_payout WHERE id >= (SELECT (min(id) + max(id)) / 2 FROM payments_payout)
ORDER BY id LIMIT 1
"""


def ids() -> Ids:
    from django.conf import settings

    payment = sample(_PAYMENT)
    order = sample(_ORDER, payment[0])
    refund = sample(_REFUND)
    dispute = sample(_DISPUTE)
    seller = order[3]
    wallet_pk, currency = sample("SELECT id, currency FROM wallets_wallet WHERE seller_account = %s", seller)
    seller_code = f"seller_pending:{seller}:{currency}"
    clearing_code = f"psp_clearing:{settings.PAYMENT_PSP}:EUR"
    account = "SELECT id FROM ledger_account WHERE code = %s"
    return Ids(
        payment_pk=payment[0],
        payment_id=payment[1],
        checkout_id=payment[2],
        buyer_id=payment[3],
        order_pk=order[0],
        payment_order_id=order[1],
        psp_reference=order[2],
        seller=seller,
        hosted_token=sample(_HOSTED)[0],
        refund_payment_pk=refund[0],
        refund_id=refund[1],
        refund_reference=refund[2],
        dispute_payment_pk=dispute[0],
        dispute_id=dispute[1],
        txn=sample(_TXN)[0],
        payout_id=sample(_PAYOUT)[0],
        run_pk=sample("SELECT run_id FROM reconciliation_mismatch WHERE status = 'open' ORDER BY run_id DESC LIMIT 1")[
            0
        ],
        seller_account_pk=sample(account, seller_code)[0],
        clearing_account_pk=sample(account, clearing_code)[0],
        seller_account_code=seller_code,
        clearing_account_code=clearing_code,
        wallet_pk=wallet_pk,
        audit_object_id=sample("SELECT object_id FROM audit_auditentry ORDER BY id DESC LIMIT 1")[0],
        idempotency_key=sample("SELECT key FROM api_idempotencykey ORDER BY id DESC LIMIT 1")[0],
    )


# --- The pages -------------------------------------------------------------------------------------------------------


def search_terms(found: Ids) -> dict[str, list[tuple[str, str]]]:
    """Per changelist (app.model): (kind, term) searched in its own search box."""
    return {
        "payments.paymentevent": [
            ("payment_id", found.payment_id),
            ("payment_order_id", found.payment_order_id),
            ("pi_", found.psp_reference),
            ("cs_", found.hosted_token),
            ("re_", found.refund_reference),
            ("rf_", found.refund_id),
            ("txn_", found.txn),
            ("dp_", found.dispute_id),
            ("buyer id", found.buyer_id),
            ("seller account", found.seller),
            ("checkout id", found.checkout_id),
        ],
        "payments.paymentorder": [
            ("payment_order_id", found.payment_order_id),
            ("payment_id", found.payment_id),
            ("pi_", found.psp_reference),
            ("cs_", found.hosted_token),
            ("seller account", found.seller),
        ],
        "payments.refund": [("rf_", found.refund_id), ("re_", found.refund_reference)],
        "payments.dispute": [("dp_", found.dispute_id)],
        "payments.payout": [("pyo_", found.payout_id), ("seller account", found.seller)],
        "payments.webhookevent": [("pi_", found.psp_reference)],
        "payments.deadletter": [("payment_order_id", found.payment_order_id)],
        "ledger.journaltransaction": [("payment_order_id", found.payment_order_id)],
        "ledger.account": [("seller account", found.seller)],
        "wallets.wallet": [("seller account", found.seller)],
        "wallets.seller": [("seller account", found.seller)],
        "audit.auditentry": [("object id", found.audit_object_id)],
        "reconciliation.mismatch": [("pi_", found.psp_reference)],
        "api.idempotencykey": [("key", found.idempotency_key)],
    }


def filter_pages(model_admin: Any, url: str, user: Any) -> Iterator[Page]:
    """The changelist with each filter's first and last choice applied, as the filter itself offers them."""
    from django.test import RequestFactory
    from django.utils import timezone

    request = RequestFactory().get(url)
    request.user = user
    changelist = model_admin.get_changelist_instance(request)
    for spec in changelist.filter_specs:
        choices = [c for c in spec.choices(changelist) if not c.get("selected") and c.get("query_string") != "?"]
        picked = {choices[0]["query_string"], choices[-1]["query_string"]} if choices else set()
        for query in sorted(picked):
            yield Page(f"  filter {spec.title}: {query}", url + query)
    if model_admin.date_hierarchy:
        year = timezone.now().year
        yield Page(f"  date {model_admin.date_hierarchy} {year}", f"{url}?{model_admin.date_hierarchy}__year={year}")


def pages(found: Ids, admin_user: Any) -> list[Page]:
    from datetime import timedelta
    from urllib.parse import urlencode

    from django.contrib import admin
    from django.urls import reverse
    from django.utils import timezone

    listed: list[Page] = [Page("index", reverse("admin:index"))]
    searches = search_terms(found)
    registry = sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label)
    for model, model_admin in registry:
        label = model._meta.label_lower
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        listed.append(Page(f"{label}", url))
        listed.extend(filter_pages(model_admin, url, admin_user))
        if model_admin.search_fields:
            for kind, term in searches.get(label, [("no match", "nothing-by-this-id")]):
                listed.append(Page(f"  search {kind}", f"{url}?{urlencode({'q': term})}"))
    entries = reverse("admin:ledger_entry_changelist")
    # The last minute of last month, and the middle of the loaded year: moments inside the closed days.
    now = timezone.now()
    month_end = (now.replace(day=1, hour=0, minute=0) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M")
    mid_history = (now - timedelta(days=182)).strftime("%Y-%m-%dT12:00")
    story = "admin:payments_paymentevent_change"
    findings = reverse("admin:reconciliation_mismatch_changelist")
    listed += [
        Page("payment story (disputed)", reverse(story, args=[found.dispute_payment_pk])),
        Page("payment story (refunded)", reverse(story, args=[found.refund_payment_pk])),
        Page("payment order page", reverse("admin:payments_paymentorder_change", args=[found.order_pk])),
        Page("a run's findings", f"{findings}?run__id__exact={found.run_pk}"),
        Page("trial balance", reverse("admin:ledger_trial_balance")),
        Page("trial balance as of", f"{reverse('admin:ledger_trial_balance')}?as_of=2000-01-01T00:00"),
        Page("trial balance as of a month end", f"{reverse('admin:ledger_trial_balance')}?as_of={month_end}"),
        Page("trial balance as of mid-history", f"{reverse('admin:ledger_trial_balance')}?as_of={mid_history}"),
        Page("seller account page", reverse("admin:ledger_account_change", args=[found.seller_account_pk])),
        Page("seller account entries", f"{entries}?{urlencode({'account__code__exact': found.seller_account_code})}"),
        Page("PSP clearing account page", reverse("admin:ledger_account_change", args=[found.clearing_account_pk])),
        Page(
            "PSP clearing account page as of mid-history",
            reverse("admin:ledger_account_change", args=[found.clearing_account_pk]) + f"?as_of={mid_history}",
        ),
        Page(
            "PSP clearing account entries",
            f"{entries}?{urlencode({'account__code__exact': found.clearing_account_code})}",
        ),
        Page("wallet page", reverse("admin:wallets_wallet_change", args=[found.wallet_pk])),
    ]
    return listed


# --- Measuring -------------------------------------------------------------------------------------------------------


def big_tables() -> dict[str, int]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, reltuples::bigint FROM pg_class WHERE relkind = 'r' AND reltuples > %s",
            [BIG_TABLE_ROWS],
        )
        return dict(cursor.fetchall())


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def seq_scans(sql: str, big: dict[str, int]) -> list[str]:
    from django.db import connection

    if not sql.lstrip().upper().startswith("SELECT"):
        return []
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return [
        f"{node['Relation Name']} ({big[node['Relation Name']]:,})"
        for node in plan_nodes(plan[0]["Plan"])
        if node.get("Node Type") in ("Seq Scan", "Parallel Seq Scan") and node.get("Relation Name") in big
    ]


def measure(page: Page, clients: dict[str, Any], repeat: int, big: dict[str, int]) -> Result:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    result = Result(page.name, page.url)
    for who, client in clients.items():
        try:
            first = client.get(page.url)
        except Exception as exc:  # a page that fails is reported, and the run goes on to the next one
            result.error = f"{type(exc).__name__}: {exc}"[:300]
            result.seconds[who] = None
            continue
        result.status[who] = first.status_code
        if first.status_code != 200:
            result.seconds[who] = None
            continue
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            client.get(page.url)
            times.append(time.perf_counter() - started)
        result.seconds[who] = statistics.median(times)
        if who == "admin":
            with CaptureQueriesContext(connection) as captured:
                client.get(page.url)
            result.queries = len(captured.captured_queries)
            result.sql_ms = sum(float(q["time"]) for q in captured.captured_queries) * 1000
            for query in captured.captured_queries:
                result.seq_scans += seq_scans(query["sql"], big)
            slowest = max(captured.captured_queries, key=lambda q: float(q["time"]), default=None)
            if slowest is not None:
                result.slowest_ms = float(slowest["time"]) * 1000
                result.slowest_sql = slowest["sql"]
    return result


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:,.0f}"


def report(results: list[Result]) -> int:
    print(f"\n{'page':<62} {'admin ms':>9} {'viewer ms':>9} {'queries':>7} {'sql ms':>7} {'slowest':>8}  flags")
    for r in results:
        viewer = ms(r.seconds.get("viewer")) if r.status.get("viewer", 200) == 200 else str(r.status.get("viewer"))
        print(
            f"{r.name[:62]:<62} {ms(r.seconds.get('admin')):>9} {viewer:>9} {r.queries:>7} {r.sql_ms:>7.0f} "
            f"{r.slowest_ms:>8.0f}  {' '.join(r.flags)}"
        )
    flagged = [r for r in results if r.flags]
    timed = [s for r in results for s in r.seconds.values() if s is not None]
    if not timed:
        print("\nno page answered")
        return 1
    # A page's time here is its slower user's.
    worst = [max((s for s in r.seconds.values() if s is not None), default=None) for r in results]
    answered = [s for s in worst if s is not None]
    print(
        f"\n{len(results)} pages; median {statistics.median(timed) * 1000:.0f} ms, slowest {max(timed) * 1000:.0f} ms; "
        f"{sum(1 for s in answered if s < FAST_SECONDS)} under {FAST_SECONDS * 1000:.0f} ms, "
        f"{sum(1 for s in answered if s < SLOW_SECONDS)} under {SLOW_SECONDS:g} s, "
        f"{sum(1 for r in flagged if 'SLOW' in r.flags)} at or over {SLOW_SECONDS:g} s; "
        f"{sum(1 for r in results if r.seq_scans)} with a sequential scan of a big table"
    )
    slowest = sorted(
        ((s, r) for s, r in zip(worst, results, strict=True) if s is not None), key=lambda x: x[0], reverse=True
    )
    print("slowest pages: " + "; ".join(f"{r.name.strip()} {s * 1000:,.0f} ms" for s, r in slowest[:5]))
    for r in flagged:
        print(f"\n[{' '.join(r.flags)}] {r.name.strip()}  {r.url}")
        if r.error:
            print(f"  error: {r.error}")
        sql = re.sub(r"\s+", " ", r.slowest_sql)[:600]
        print(f"  slowest query ({r.slowest_ms:.0f} ms): {sql}")
    return 0


# --- Main ------------------------------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--payments", type=positive(int), default=1_000_000, help="payments to load (default 1M)")
    parser.add_argument("--repeat", type=positive(int), default=5, help="timed requests per page (default 5)")
    parser.add_argument(
        "--keep-data", action="store_true", help="measure the data an earlier run loaded (migrated to this code)"
    )
    parser.add_argument("--only", default="", help="only the pages whose name or URL this regular expression finds")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if not bench_ready("bench-admin", ("DATABASE_URL", "REDIS_URL", "SECRET_KEY")):
        return 2
    try:
        bench_url, maintenance_url, db_name = bench_database_urls(os.environ["DATABASE_URL"], DB_SUFFIX)
        use_bench_database(bench_url)
        print(f"CPUs: {os.cpu_count()}   python {sys.version.split()[0]}   database: {db_name}")
        if args.keep_data:
            manage("migrate", "--noinput", "-v", "0")  # what the code added since (indexes) applies to the data
            manage("ledger_close")  # the days finished since the load, as the nightly job would have closed them
        else:
            recreate_database(maintenance_url, db_name)
            manage("migrate", "--noinput", "-v", "0")
            started = time.monotonic()
            manage("seed_volume", "--payments", str(args.payments), "--i-know-this-is-not-production")
            print(f"seed_volume with its ledger check: {time.monotonic() - started:.0f} s")

        import django

        # A 403 (the viewer on a page not for finance) is an answer here, not an incident to log with its traceback;
        # whitenoise's warning about static files not collected concerns serving them, not these pages.
        warnings.filterwarnings("ignore", message="No directory at")
        django.setup()
        logging.getLogger("django.request").setLevel(logging.ERROR)
        from django.test import Client

        big = big_tables()
        print("big tables: " + ", ".join(f"{name} {rows:,}" for name, rows in sorted(big.items(), key=lambda x: -x[1])))
        people = users()
        found = ids()
        clients = {}
        for who, user in people.items():
            clients[who] = Client(HTTP_HOST="127.0.0.1")
            clients[who].force_login(user)
        only = re.compile(args.only)
        listed = [p for p in pages(found, people["admin"]) if only.search(p.name) or only.search(p.url)]
        print(f"{len(listed)} pages, {args.repeat} timed requests each per user (median)")
        results = []
        for page in listed:
            results.append(measure(page, clients, args.repeat, big))
            print(".", end="", flush=True)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    if args.json:
        args.json.write_text(json.dumps([asdict(r) | {"flags": r.flags} for r in results], indent=1))
    return report(results)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
