"""A subset of Stripe's Search Query Language (docs.stripe.com/search) for PaymentIntents, turned into a filter.

Supported: clauses joined by ``AND`` or by ``OR`` (not both, as at Stripe); a clause may be negated with ``-``.
- ``metadata['key']:'value'`` (exact match; Stripe's metadata search is exact too),
- ``status:'succeeded'``, ``currency:'eur'``,
- ``amount:1000``, ``amount>1000``, ``amount>=1000``, ``amount<1000``, ``amount<=1000``.
Values are quoted with ``'`` or ``"``; a backslash escapes a quote inside. Anything else is a 400 on ``query``.
"""

from __future__ import annotations

import re
from functools import reduce
from operator import and_, or_

from django.db.models import Q

from psp_sandbox.errors import InvalidRequest

_CLAUSE = re.compile(
    r"""\s*(?P<negate>-)?
    (?:metadata\[(?P<mq>['"])(?P<mkey>(?:\\.|(?!(?P=mq)).)+)(?P=mq)\]|(?P<field>[a-z_]+))
    (?P<op>:|>=|<=|>|<)
    (?:(?P<vq>['"])(?P<qvalue>(?:\\.|(?!(?P=vq)).)*)(?P=vq)|(?P<number>-?[0-9]+))
    \s*""",
    re.VERBOSE,
)
_JOINER = re.compile(r"(AND|OR)\s+")
_STRING_FIELDS = {"status", "currency"}
_LOOKUPS = {">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}


def query_filter(query: str) -> Q:
    clauses: list[Q] = []
    joiners: set[str] = set()
    position = 0
    while True:
        match = _CLAUSE.match(query, position)
        if match is None:
            raise _invalid(query, f"cannot parse the clause at character {position}")
        clauses.append(_clause(match, query))
        position = match.end()
        if position == len(query):
            break
        # The clause pattern ate the blanks after it; a joiner needs at least one before it.
        joiner = _JOINER.match(query, position) if query[position - 1].isspace() else None
        if joiner is None:
            raise _invalid(query, f"expected AND or OR at character {position}")
        joiners.add(joiner.group(1))
        position = joiner.end()
    if len(joiners) > 1:
        raise _invalid(query, "AND and OR cannot be mixed in one query")
    return reduce(or_ if joiners == {"OR"} else and_, clauses)


def _clause(match: re.Match[str], query: str) -> Q:
    op = match["op"]
    if match["number"] is not None:
        value: str | int = int(match["number"])
    else:
        value = _unescape(match["qvalue"])
    if match["mkey"] is not None:
        if op != ":" or not isinstance(value, str):
            raise _invalid(query, "metadata is matched with : and a quoted value")
        clause = Q(metadata__contains={_unescape(match["mkey"]): value})
    elif match["field"] in _STRING_FIELDS:
        if op != ":" or not isinstance(value, str):
            raise _invalid(query, f"{match['field']} is matched with : and a quoted value")
        clause = Q(**{match["field"]: value.lower() if match["field"] == "currency" else value})
    elif match["field"] == "amount":
        if not isinstance(value, int):
            raise _invalid(query, "amount is compared with a number")
        clause = Q(amount=value) if op == ":" else Q(**{f"amount__{_LOOKUPS[op]}": value})
    else:
        raise _invalid(query, f"the field {match['field']} is not searchable in the sandbox")
    return ~clause if match["negate"] else clause


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _invalid(query: str, why: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid query: {why}: {query!r}.", code="parameter_invalid_string", param="query")
