from __future__ import annotations

import io
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from djmoney.contrib.exchange.models import ExchangeBackend, Rate

from ledger.money import AmountError
from wallets.errors import ExchangeRateMissing, RatesFileInvalid
from wallets.fx import Conversion, FileRatesBackend, fx_convert, rates_file_read

pytestmark = pytest.mark.django_db

# The rates the conversion tests use, chosen for their rounding cases rather than taken from config/fx_rates.json:
# 10.00 EUR at 162.05 is 1620.5 JPY, exactly half a yen, where half up (1621) and half even (1620) differ.
TEST_RATES = {"USD": "1.0850", "GBP": "0.8450", "JPY": "162.05", "KWD": "0.3340"}

RatesLoader = Callable[..., Path]


@pytest.fixture
def load_rates(settings: Any, tmp_path: Path) -> RatesLoader:
    """Write a rates file, point FX_RATES_FILE at it and load it with django-money's update_rates command."""

    def load(rates: dict[str, Any] | None = None, base: str = "EUR", *, name: str = "rates.json") -> Path:
        path = tmp_path / name
        path.write_text(json.dumps({"base": base, "rates": TEST_RATES if rates is None else rates}))
        settings.FX_RATES_FILE = path
        call_command("update_rates", stdout=io.StringIO())
        return path

    return load


@pytest.fixture
def fx_rates(load_rates: RatesLoader) -> Path:
    return load_rates()


def loaded_rates() -> dict[str, Decimal]:
    return dict(Rate.objects.filter(backend_id=FileRatesBackend.name).values_list("currency", "value"))


# --- Conversion -----------------------------------------------------------------------------------------------------


def test_eur_converts_to_usd_at_the_file_rate_rounded_to_a_cent(fx_rates: Path) -> None:
    conversion = fx_convert(amount=1999, source="EUR", target="USD")

    # 19.99 x 1.085 = 21.68915 USD
    assert conversion == Conversion("EUR", 1999, "USD", 2169, Decimal("1.085"))


def test_usd_converts_to_eur_at_the_inverse_rate(fx_rates: Path) -> None:
    conversion = fx_convert(amount=2169, source="USD", target="EUR")

    # 21.69 / 1.085 = 19.9907... EUR
    assert conversion.rate == Decimal(1) / Decimal("1.085")
    assert conversion.target_amount == 1999


def test_usd_converts_to_gbp_through_the_base_currency(fx_rates: Path) -> None:
    conversion = fx_convert(amount=10_000, source="USD", target="GBP")

    # 100 USD is 92.1658... EUR, which is 77.8801... GBP
    assert conversion.rate == Decimal("0.845") / Decimal("1.085")
    assert conversion.target_amount == 7788


def test_eur_to_jpy_rounds_half_a_yen_up(fx_rates: Path) -> None:
    # 10.00 EUR x 162.05 = 1620.5 JPY: exactly half, which half up takes to 1621 (half even would give 1620)
    assert fx_convert(amount=1000, source="EUR", target="JPY").target_amount == 1621
    # just under and just over the half are rounded to the nearest yen
    assert fx_convert(amount=999, source="EUR", target="JPY").target_amount == 1619  # 1618.8795
    assert fx_convert(amount=1001, source="EUR", target="JPY").target_amount == 1622  # 1622.1205


def test_jpy_has_no_decimals_and_kwd_three(fx_rates: Path) -> None:
    # 1621 JPY / 162.05 = 10.00308... EUR
    assert fx_convert(amount=1621, source="JPY", target="EUR").target_amount == 1000
    # 19.99 EUR x 0.334 = 6.67666 KWD, in fils
    assert fx_convert(amount=1999, source="EUR", target="KWD").target_amount == 6677


def test_the_same_currency_converts_at_rate_one_without_any_rate_loaded() -> None:
    assert not Rate.objects.exists()

    assert fx_convert(amount=1234, source="JPY", target="JPY") == Conversion("JPY", 1234, "JPY", 1234, Decimal(1))


@pytest.mark.parametrize(("source", "target"), [("EUR", "CHF"), ("CHF", "EUR"), ("USD", "CHF"), ("CHF", "SEK")])
def test_a_currency_without_a_rate_is_refused_naming_both(fx_rates: Path, source: str, target: str) -> None:
    with pytest.raises(ExchangeRateMissing, match=f"from {source} to {target}") as raised:
        fx_convert(amount=100, source=source, target=target)

    assert raised.value.code == "exchange_rate_missing"


def test_no_conversion_before_the_rates_are_loaded() -> None:
    with pytest.raises(ExchangeRateMissing, match="update_rates"):
        fx_convert(amount=100, source="EUR", target="USD")


def test_an_unknown_currency_code_is_refused(fx_rates: Path) -> None:
    with pytest.raises(AmountError, match="XXQ"):
        fx_convert(amount=100, source="XXQ", target="XXQ")


def test_a_reloaded_file_is_used_at_once(load_rates: RatesLoader) -> None:
    load_rates({"USD": "1.0850"})
    assert fx_convert(amount=1000, source="EUR", target="USD").target_amount == 1085

    load_rates({"USD": "1.2000"})

    # no cached rate outlives the load that replaced it
    assert fx_convert(amount=1000, source="EUR", target="USD").target_amount == 1200


# --- Loading the file -----------------------------------------------------------------------------------------------


def test_update_rates_loads_the_shipped_file_covering_every_payment_currency() -> None:
    shipped = rates_file_read(django_settings.FX_RATES_FILE)
    out = io.StringIO()

    call_command("update_rates", stdout=out)

    assert "Successfully updated rates from file" in out.getvalue()
    assert ExchangeBackend.objects.get(name=FileRatesBackend.name).base_currency == shipped.base == "EUR"
    assert loaded_rates() == shipped.rates
    assert set(django_settings.PAYMENT_CURRENCIES) <= {shipped.base, *shipped.rates}
    assert len(shipped.rates) > len(django_settings.PAYMENT_CURRENCIES)


def test_update_rates_stores_the_file_exactly(fx_rates: Path) -> None:
    assert loaded_rates() == {code: Decimal(rate) for code, rate in TEST_RATES.items()}


def test_a_json_number_is_read_as_an_exact_decimal(tmp_path: Path) -> None:
    path = tmp_path / "numbers.json"
    path.write_text('{"base": "EUR", "rates": {"USD": 1.0850, "JPY": 162}}')

    assert rates_file_read(path).rates == {"USD": Decimal("1.0850"), "JPY": Decimal(162)}


def test_a_currency_taken_out_of_the_file_loses_its_rate(load_rates: RatesLoader) -> None:
    load_rates()

    load_rates({"USD": "1.1000"})

    assert loaded_rates() == {"USD": Decimal("1.1")}
    with pytest.raises(ExchangeRateMissing):
        fx_convert(amount=100, source="EUR", target="GBP")


def test_a_file_with_another_base_replaces_the_base(load_rates: RatesLoader) -> None:
    load_rates()

    load_rates({"EUR": "0.9000"}, base="USD")

    assert ExchangeBackend.objects.get(name=FileRatesBackend.name).base_currency == "USD"
    assert loaded_rates() == {"EUR": Decimal("0.9")}
    assert fx_convert(amount=1000, source="USD", target="EUR").target_amount == 900


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad_rates.json"
    path.write_text(text)
    return path


def document(rates: dict[str, Any], base: Any = "EUR") -> str:
    return json.dumps({"base": base, "rates": rates})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "expected .*got a JSON list"),
        ('{"rates": {"USD": "1.0850"}}', r"got an object with keys \['rates'\]"),
        ('{"base": "EUR", "rates": {}, "date": "2025-01-01"}', r"got an object with keys \['base', 'date', 'rates'\]"),
        (document({"USD": "1.0850"}, base="XXQ"), "base 'XXQ' is not an ISO 4217"),
        (document({"USD": "1.0850"}, base=1), "base 1 is not an ISO 4217"),
        (document({}), "rates must be a non-empty object"),
        ('{"base": "EUR", "rates": ["USD"]}', "rates must be a non-empty object"),
        (document({"XXQ": "1.5"}), "'XXQ' is not an ISO 4217"),
        (document({"EUR": "1"}), "EUR is the base currency"),
        (document({"JPY": "0"}), "the rate of JPY, '0', is not positive"),
        (document({"JPY": "-162.05"}), "the rate of JPY, '-162.05', is not a decimal number"),
        ('{"base": "EUR", "rates": {"JPY": -162.05}}', r"the rate of JPY, Decimal\('-162.05'\), is not positive"),
        (document({"USD": "1,085"}), "the rate of USD, '1,085', is not a decimal number"),
        (document({"USD": "abc"}), "the rate of USD, 'abc', is not a decimal number"),
        (document({"USD": ""}), "the rate of USD, '', is not a decimal number"),
        (document({"USD": True}), "the rate of USD, True, is not a decimal number"),
        (document({"USD": None}), "the rate of USD, None, is not a decimal number"),
        ('{"base": "EUR", "rates": {"USD": NaN}}', "not valid JSON"),
        ('{"base": "EUR", "rates": {"USD": Infinity}}', "not valid JSON"),
        (document({"USD": "1.0850001"}), "the rate of USD, '1.0850001', has more than 6 decimal places"),
        (document({"USD": "100000000000000"}), "the rate of USD, '100000000000000', has more than 14 integer digits"),
    ],
)
def test_a_malformed_file_is_refused_naming_the_file_and_the_rate(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)

    with pytest.raises(RatesFileInvalid, match=message) as raised:
        rates_file_read(path)

    assert str(path) in str(raised.value)


def test_a_missing_file_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(RatesFileInvalid, match="cannot be read") as raised:
        rates_file_read(tmp_path / "absent.json")

    assert str(tmp_path / "absent.json") in str(raised.value)


def test_update_rates_refuses_a_malformed_file_and_keeps_the_rates_it_had(
    fx_rates: Path, settings: Any, tmp_path: Path
) -> None:
    # given
    before = loaded_rates()
    settings.FX_RATES_FILE = write(tmp_path, document({"USD": "1.2000", "GBP": "0"}))

    # when
    with pytest.raises(RatesFileInvalid, match=r"bad_rates\.json: the rate of GBP, '0', is not positive"):
        call_command("update_rates", stdout=io.StringIO())

    # then
    assert loaded_rates() == before
    assert fx_convert(amount=1000, source="EUR", target="USD").target_amount == 1085
