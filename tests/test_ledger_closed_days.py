"""Closed days (ledger/models.py): balances read from the rollup plus the entries since are the plain sums over the
entries, at any moment, whatever was posted, back-dated or closed in between."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from celery.schedules import crontab
from django.conf import settings
from django.db import connection

from ledger.models import AccountClosedTotal, AccountDay, AccountMonth, AccountType, LedgerClosing, Side
from ledger.selectors import account_balances, signed_balance, trial_balances
from ledger.services import AccountRef, Line, journal_post, ledger_days_close, ledger_days_reopen
from tests.conftest import wait_until

# The close runs its own durable transactions.
pytestmark = pytest.mark.django_db(transaction=True)

ACCOUNTS = [
    AccountRef("psp_clearing:stripe:EUR", AccountType.ASSET, "EUR"),
    AccountRef("platform_fees:EUR", AccountType.REVENUE, "EUR"),
    AccountRef("seller_pending:seller_1:EUR", AccountType.LIABILITY, "EUR"),
    AccountRef("seller_pending:seller_2:EUR", AccountType.LIABILITY, "EUR"),
]
CODES = [a.code for a in ACCOUNTS]
# Midnight UTC, two days before a month ends: the postings sit on and around day and month boundaries.
DAY = datetime(2026, 3, 30, tzinfo=UTC)


def day(offset: int) -> date:
    return (DAY + timedelta(days=offset)).date()


def post(at: datetime, rng: random.Random) -> None:
    debit, *credits = rng.sample(ACCOUNTS, 3)
    parts = [rng.randint(1, 10_000) for _ in credits]
    lines = [Line(debit, Side.DEBIT, sum(parts))] + [
        Line(account, Side.CREDIT, part) for account, part in zip(credits, parts, strict=True)
    ]
    journal_post(kind="test", reference=f"{at.isoformat()}:{rng.random()}", lines=lines, actor="t", effective_at=at)


def plain_balances(as_of: datetime | None) -> dict[str, int]:
    """The reference: the sum over every entry effective by then, nothing else read."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT a.code, a.type, coalesce(sum(e.amount) FILTER (WHERE e.side = 'D'), 0),
                   coalesce(sum(e.amount) FILTER (WHERE e.side = 'C'), 0)
            FROM ledger_account a LEFT JOIN ledger_entry e
                ON e.account_id = a.id AND (%(as_of)s::timestamptz IS NULL OR e.effective_at <= %(as_of)s)
            GROUP BY a.code, a.type
            """,
            {"as_of": as_of},
        )
        return {code: signed_balance(type_, int(d), int(c)) for code, type_, d, c in cursor.fetchall()}


def moments() -> list[datetime | None]:
    """Now, before everything, and around each day boundary of the postings."""
    found: list[datetime | None] = [None, DAY - timedelta(days=30)]
    for days in range(-2, 7):
        boundary = DAY + timedelta(days=days)
        found += [boundary - timedelta(microseconds=1), boundary, boundary + timedelta(hours=13)]
    return found


def assert_exact() -> None:
    for as_of in moments():
        expected = plain_balances(as_of)
        assert account_balances(codes=CODES, as_of=as_of) == expected, as_of
        (eur,) = trial_balances(as_of=as_of)
        by_code = {line.code: line.balance for line in eur.lines}
        assert by_code["psp_clearing:stripe:EUR"] == expected["psp_clearing:stripe:EUR"], as_of
        assert by_code["seller_pending:*:EUR"] == expected[CODES[2]] + expected[CODES[3]], as_of
        assert eur.balanced


def assert_rollup_is_the_entries() -> None:
    closed = LedgerClosing.objects.get().closed_through
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT account_id, (effective_at AT TIME ZONE 'UTC')::date, sum(amount) FILTER (WHERE side = 'D'),
                   sum(amount) FILTER (WHERE side = 'C')
            FROM ledger_entry WHERE (effective_at AT TIME ZONE 'UTC')::date <= %s GROUP BY 1, 2
            """,
            [closed],
        )
        days = {(a, d): (dr or 0, cr or 0) for a, d, dr, cr in cursor.fetchall()}
    assert {(r.account_id, r.day): (r.debits, r.credits) for r in AccountDay.objects.all()} == days
    totals: dict[int, tuple[int, int]] = {}
    months: dict[tuple[int, date], tuple[int, int]] = {}
    for (account, on), (debits, credits) in days.items():
        before = totals.get(account, (0, 0))
        totals[account] = (before[0] + debits, before[1] + credits)
        before = months.get((account, on.replace(day=1)), (0, 0))
        months[(account, on.replace(day=1))] = (before[0] + debits, before[1] + credits)
    assert {t.account_id: (t.debits, t.credits) for t in AccountClosedTotal.objects.all()} == totals
    assert {(m.account_id, m.month): (m.debits, m.credits) for m in AccountMonth.objects.all()} == months


def test_balances_match_the_plain_sums_before_and_after_closing_and_back_dated_postings() -> None:
    # given postings over five days, several on the same day and on the very boundaries
    rng = random.Random(7)
    for _ in range(40):
        post(DAY + timedelta(seconds=rng.randint(0, 5 * 86_400)), rng)
    post(DAY, rng)
    post(DAY + timedelta(days=2) - timedelta(microseconds=1), rng)
    assert_exact()  # nothing closed: every entry summed

    # when the first three days are closed (the last two of March, the first of April)
    assert ledger_days_close(through=day(2)) == day(2)

    # then every balance is the same, read from the closed days
    assert AccountDay.objects.exists()
    assert_rollup_is_the_entries()
    assert_exact()

    # when postings are back-dated into the closed days (and before the first one), and more into the open ones
    for _ in range(15):
        post(DAY + timedelta(seconds=rng.randint(-86_400, 3 * 86_400 - 1)), rng)
    post(DAY + timedelta(days=3) - timedelta(microseconds=1), rng)  # the last instant of the last closed day
    for _ in range(5):
        post(DAY + timedelta(days=3, seconds=rng.randint(0, 86_400)), rng)

    # then they are in the closed days at once, and the balances still match
    assert_rollup_is_the_entries()
    assert_exact()

    # when the rest is closed too, then reopened
    ledger_days_close(through=day(10))
    assert_rollup_is_the_entries()
    assert_exact()
    ledger_days_reopen()
    assert LedgerClosing.objects.get().closed_through is None
    assert not AccountDay.objects.exists()
    assert_exact()


def test_closing_again_or_with_nothing_to_close_changes_nothing() -> None:
    # given nothing posted
    assert ledger_days_close(through=day(2)) is None

    # given postings on two days, closed once
    rng = random.Random(3)
    post(DAY + timedelta(hours=1), rng)
    post(DAY + timedelta(days=1, hours=1), rng)
    assert ledger_days_close(through=day(1)) == day(1)
    rows = sorted(AccountDay.objects.values_list("account_id", "day", "debits", "credits"))

    # when closed again, through the same day or an earlier one
    assert ledger_days_close(through=day(1)) == day(1)
    assert ledger_days_close(through=day(-20)) == day(1)

    # then the rollup is as it was
    assert sorted(AccountDay.objects.values_list("account_id", "day", "debits", "credits")) == rows
    assert_exact()


def test_the_close_by_default_leaves_today_open() -> None:
    rng = random.Random(5)
    now = datetime.now(UTC)
    post(now - timedelta(days=2), rng)
    post(now, rng)

    closed = ledger_days_close()

    assert closed == now.date() - timedelta(days=1)
    assert not AccountDay.objects.filter(day=now.date()).exists()
    assert account_balances(codes=CODES) == plain_balances(None)


def test_postings_racing_the_close_are_each_counted_once() -> None:
    # given eight workers posting into the days being closed (and the ones after), each posting a transaction of
    # its own, while another closes those days one at a time
    workers, postings = 8, 30
    barrier = threading.Barrier(workers + 1)

    def work(worker: int) -> None:
        rng = random.Random(worker)
        barrier.wait()
        try:
            for _ in range(postings):
                post(DAY + timedelta(seconds=rng.randint(0, 4 * 86_400 - 1)), rng)
        finally:
            connection.close()

    def close() -> None:
        barrier.wait()
        try:
            for offset in range(4):
                ledger_days_close(through=day(offset))
        finally:
            connection.close()

    # when they all run at once
    with ThreadPoolExecutor(max_workers=workers + 1) as pool:
        for done in [pool.submit(work, w) for w in range(workers)] + [pool.submit(close)]:
            done.result()

    # then the closed days hold every entry of theirs, once, and every balance is the plain sum
    assert LedgerClosing.objects.get().closed_through == day(3)
    assert_rollup_is_the_entries()
    assert_exact()


def test_the_nightly_beat_entry_closes_yesterday_on_a_real_worker(celery_worker_app: Any) -> None:
    from config.schedule import BEAT_SCHEDULE

    # given a posting two days ago
    post(datetime.now(UTC) - timedelta(days=2), random.Random(9))
    entry = BEAT_SCHEDULE["ledger-days-close"]
    assert entry["schedule"] == crontab(hour=0, minute=20)
    assert settings.CELERY_TASK_ROUTES[entry["task"]] == {"queue": "maintenance"}  # the Procfile's worker serves it

    # when beat's entry fires (sent by name, through Redis, as beat sends it)
    celery_worker_app.send_task(entry["task"])

    # then the worker closes the days through yesterday
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    wait_until(lambda: LedgerClosing.objects.filter(closed_through=yesterday).exists())
    assert_rollup_is_the_entries()
