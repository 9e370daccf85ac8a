from __future__ import annotations

import pytest

from ops.db import PreparedStatement

pytestmark = pytest.mark.django_db


def test_a_prepared_statement_numbers_each_named_parameter_once() -> None:
    statement = PreparedStatement("test_prepared_sum", "SELECT %(a)s::int + %(b)s::int * 10 + %(a)s::int * 100")

    assert statement.parameters == ["a", "b"]
    assert statement.fetchall({"a": 1, "b": 2}) == [(121,)]
    # prepared once, executed again with other values, given in any order
    assert statement.fetchall({"b": 5, "a": 3}) == [(353,)]
