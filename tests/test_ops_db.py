from __future__ import annotations

import datetime
from decimal import Decimal

import pytest

from ops.db import PreparedStatement

pytestmark = pytest.mark.django_db


def test_a_prepared_statement_numbers_each_named_parameter_once() -> None:
    statement = PreparedStatement("test_prepared_sum", "SELECT %(a)s::int + %(b)s::int * 10 + %(a)s * 100")

    assert statement.parameters == ["a", "b"]
    assert statement.fetchall({"a": 1, "b": 2}) == [(121,)]
    # prepared once, executed again with other values, given in any order
    assert statement.fetchall({"b": 5, "a": 3}) == [(353,)]


def test_each_value_reaches_postgresql_exactly_with_its_type() -> None:
    statement = PreparedStatement(
        "test_prepared_types",
        "SELECT %(amount)s::numeric, %(at)s::timestamptz, %(ip)s::inet, %(flag)s::boolean, %(text)s::varchar,"
        " %(ids)s::varchar[], %(amounts)s::numeric[], %(none)s::varchar[]",
    )
    at = datetime.datetime(2026, 11, 22, 6, 50, 37, 916123, tzinfo=datetime.UTC)

    row = statement.fetchall(
        {
            "amount": Decimal("1.005"),
            "at": at,
            "ip": None,
            "flag": True,
            "text": 'O\'Brien "quoted" \\ ünïcode',
            "ids": ["po_b", "po_a", "po_c"],
            "amounts": [Decimal("19.99"), Decimal("5.00")],
            "none": [],
        }
    )[0]

    assert row == (
        Decimal("1.005"),
        at,
        None,
        True,
        'O\'Brien "quoted" \\ ünïcode',
        ["po_b", "po_a", "po_c"],  # in the order given
        [Decimal("19.99"), Decimal("5.00")],
        [],
    )


def test_a_later_use_keeps_its_own_cast() -> None:
    statement = PreparedStatement("test_prepared_recast", "SELECT %(a)s::numeric, %(a)s::int, %(a)s::text || 'x'")

    assert statement.fetchall({"a": Decimal("2.6")}) == [(Decimal("2.6"), 3, "2.6x")]


def test_a_parameter_untyped_where_first_used_is_refused() -> None:
    with pytest.raises(ValueError, match="needs a type cast"):
        PreparedStatement("test_prepared_untyped", "SELECT %(a)s + %(a)s::int")


def test_a_missing_value_or_one_without_an_exact_json_form_is_refused_before_postgresql() -> None:
    statement = PreparedStatement("test_prepared_missing", "SELECT %(a)s::int, %(at)s::timestamptz")

    with pytest.raises(KeyError, match="no value for a"):
        statement.fetchall({"at": None})
    with pytest.raises(ValueError, match="naive datetime"):
        statement.fetchall({"a": 1, "at": datetime.datetime(2026, 11, 22)})
    with pytest.raises(TypeError, match="set"):
        statement.fetchall({"a": {1}, "at": None})
