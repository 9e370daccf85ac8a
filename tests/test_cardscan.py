"""The card-data scan of a test run's logs and database (scripts/cardscan.py, tests/card_scan_capture.py): it finds
a planted card number wherever it is, and is not set off by the digits that logs and tables are full of."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.carddata import contains_card_number
from psp_sandbox.models import SandboxConfig
from scripts import cardscan
from tests import card_scan_capture
from wallets.models import Seller

CARD = "4000 0566 5566 5556"  # Luhn-valid: a Visa debit test number


def _scan(tmp_path: Path, name: str, text: str) -> list[cardscan.Hit]:
    path = tmp_path / name
    path.write_text(text)
    return cardscan.scan_paths([tmp_path])


def test_a_card_number_in_a_log_line_is_found_with_its_place_and_never_printed_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # given
    line = '{"level": "INFO", "logger": "payments", "message": "note: card ' + CARD + ' typed"}\n'

    # when
    hits = _scan(tmp_path, "app.log", '{"level": "INFO", "message": "ok"}\n' + line)
    clean = cardscan.report(hits)

    # then
    assert [(Path(hit.source).name, hit.where) for hit in hits] == [("app.log:2", "log")]
    assert "card 4000 **** **** 5556 typed" in hits[0].excerpt
    assert not clean
    assert CARD not in capsys.readouterr().out


def test_a_card_number_in_a_dump_names_its_table_and_the_psp_tables_do_not_fail_the_scan(tmp_path: Path) -> None:
    dump = (
        "COPY public.wallets_seller (id, account, display_name) FROM stdin;\n"
        f"1\tseller_7\t{CARD}\n"
        "\\.\n"
        "COPY public.psp_sandbox_charge (id, note) FROM stdin;\n"
        "1\t4242424242424242\n"
        "\\.\n"
    )

    hits = _scan(tmp_path, "database.sql", dump)

    assert [(hit.where, hit.ignored) for hit in hits] == [
        ("table wallets_seller", False),
        ("table psp_sandbox_charge", True),
    ]
    assert not cardscan.report(hits)
    assert cardscan.report(hits[1:])


@pytest.mark.parametrize(
    "text",
    [
        '{"time": "2026-11-21T13:15:56.141+00:00", "pid": 14824, "duration_ms": 12.503}',
        "1\t1763730956\t1763730956141\t2026-11-21 13:15:56.141+00\t1999\t100000000\tEUR",
        "took 0.0367946749997828 s",  # a Luhn-valid fraction
        "amount 1234567.89 EUR, fx 1.085000",
        "po_1001_a pay_01m7z3zjv94j99dj1180v34f7w req ges27ace5cewaqwv4ccqnkdd",
        "10862d6a14bed37a6018443544144cde377c5b1222a648ebd0b8a677867f0e1a",  # sha256 with a Luhn-valid run
        "550e8400-e29b-41d4-a716-446655440000",
        "+49 30 1234567 ext 42",
        "4242424242424241",  # fails the Luhn check
        "42424242424242424242",  # 20 digits
        "1234-5678",
    ],
)
def test_ids_timestamps_amounts_and_digests_are_not_card_numbers(tmp_path: Path, text: str) -> None:
    assert _scan(tmp_path, "app.log", text + "\n") == []


def test_the_command_exits_non_zero_on_a_hit_and_zero_when_clean(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("nothing here 2026-11-21\n")
    assert cardscan.main([str(tmp_path)]) == 0
    log.write_text(f"card {CARD}\n")
    assert cardscan.main([str(log)]) == 1
    assert cardscan.main([str(tmp_path / "missing")]) == 2


@pytest.mark.django_db(transaction=True)
def test_the_row_snapshot_and_the_database_dump_find_a_card_number_stored_in_our_tables(tmp_path: Path) -> None:
    # given: a card number where none may be, and one in the PSP's own table
    seller = Seller.objects.create(account="seller_scan", display_name=f"Shop {CARD}")
    config = SandboxConfig.objects.create(overrides={"note": "4242424242424242"})

    # when
    try:
        card_scan_capture.snapshot_rows(tmp_path)
        card_scan_capture.dump_database(tmp_path)
    finally:
        # Gone before this test's own snapshot: make test's scan of this run must not find them.
        seller.delete()
        config.delete()
    hits = cardscan.scan_paths([tmp_path])

    # then
    found = {(Path(hit.source).name.split(":")[0].split("-")[0], hit.where, hit.ignored) for hit in hits}
    assert found == {
        ("rows", "table wallets_seller", False),
        ("rows", "table psp_sandbox_sandboxconfig", True),
        ("database.sql", "table wallets_seller", False),
        ("database.sql", "table psp_sandbox_sandboxconfig", True),
    }


_TEXT = st.text(alphabet="0123456789 -xyz_/:", max_size=60)


@given(prefix=_TEXT, suffix=_TEXT, digits=st.lists(st.integers(0, 9), min_size=12, max_size=18), data=st.data())
def test_any_card_number_between_any_text_is_found(
    prefix: str, suffix: str, digits: list[int], data: st.DataObject
) -> None:
    body = "".join(map(str, digits))
    number = body + next(d for d in "0123456789" if cardscan.luhn_valid(body + d))
    separator = data.draw(st.sampled_from(["", " ", "-"]))
    grouped = separator.join(number[i : i + 4] for i in range(0, len(number), 4))
    # Glued to digits the number would be another, longer one: keep a letter between.
    text = f"{prefix}x{grouped}x{suffix}"
    assert list(cardscan.card_spans(text))


@given(st.text(alphabet="0123456789 -xyz_/:", max_size=80))
def test_the_scan_and_the_api_guard_agree_on_what_is_a_card_number(text: str) -> None:
    # The scan is code of its own so that a fault in the guard cannot hide from it; without decimal points and hex
    # digests (which the scan alone passes over) the two must judge every text alike.
    assert bool(list(cardscan.card_spans(text))) == contains_card_number(text)
