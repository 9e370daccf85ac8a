"""Prepared statements, for the few statements that run on every request of a hot path.

Django binds parameters on the client side: each statement reaches PostgreSQL as new text, to be parsed and planned
again. For a statement that writes several tables in one go (the payment's, payments/services.py) that work cost
about as much as the writing itself. A ``PreparedStatement`` is PREPAREd once per database connection, and each use
is an EXECUTE with the values: the plan is PostgreSQL's to keep, and to redo when a migration changes a table.

SQL's PREPARE, not the protocol's: it goes through Django's cursor like any other statement (metrics, query capture,
error wrapping), and a rolled-back transaction leaves it in place (psycopg drops its own prepared statements on every
rollback). It needs a session-level connection: behind a pooler in transaction mode, the statement would not follow
the session.

The values travel as one parameter, a JSON object, from which the statement takes each by name. Django's cursor binds
on the client side: psycopg adapting two dozen values (arrays among them) one by one into SQL literals cost the web
process more than the rest of the statement's work there, while one JSON string is a single C-level encode and quote.
"""

from __future__ import annotations

import datetime
import json
import re
import weakref
from decimal import Decimal
from typing import Any

from django.db import connection

# A named placeholder and the type it is cast to, as in ``%(amounts)s::numeric[]``.
_PLACEHOLDER = re.compile(r"%\((\w+)\)s(?:::(\w+)(\[\])?)?")


class PreparedStatement:
    """``sql`` with ``%(name)s`` placeholders, each typed where it is first used (``%(amounts)s::numeric[]``), as
    PREPARE would fix its type there; a later use without a cast has that type too. A parameter is a JSON scalar (text
    cast to its type) or, for an array type, a JSON array."""

    def __init__(self, name: str, sql: str) -> None:
        self.name = name
        types: dict[str, tuple[str, bool]] = {}  # parameter → (type, is an array)

        def extract(match: re.Match[str]) -> str:
            parameter, cast, array = match.groups()
            if cast is not None:
                types.setdefault(parameter, (cast, bool(array)))
            if parameter not in types:
                raise ValueError(f"{name}: %({parameter})s needs a type cast where it is first used")
            type_name, is_array = types[parameter]
            if is_array:
                value = f"ARRAY(SELECT jsonb_array_elements_text($1->'{parameter}'))::{type_name}[]"
            else:
                value = f"($1->>'{parameter}')::{type_name}"
            # A later use's own cast still applies, to the value of the parameter's type (as after PREPARE).
            return value if cast is None else f"{value}::{cast}{array or ''}"

        self._prepare = f"PREPARE {name} (jsonb) AS {_PLACEHOLDER.sub(extract, sql)}"
        self._execute = f"EXECUTE {name} (%s)"
        self.parameters = list(types)
        # The connections (psycopg's, one per Django connection) on which this statement is prepared: a new one,
        # after a reconnection, prepares it again.
        self._prepared_on: weakref.WeakSet[Any] = weakref.WeakSet()

    def fetchall(self, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """EXECUTE the statement with ``params`` (name → value) on the current connection; return its rows."""
        missing = set(self.parameters) - params.keys()
        if missing:
            raise KeyError(f"{self.name}: no value for {', '.join(sorted(missing))}")
        values = json.dumps({name: params[name] for name in self.parameters}, default=_json_value)
        with connection.cursor() as cursor:
            session = connection.connection
            if session not in self._prepared_on:
                cursor.execute(self._prepare)
                self._prepared_on.add(session)
            cursor.execute(self._execute, [values])
            return cursor.fetchall()


def _json_value(value: Any) -> str:
    # Exact text for what JSON has no type for: PostgreSQL reads it back with the parameter's cast.
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            raise ValueError("a naive datetime has no single meaning as timestamptz")
        return value.isoformat()
    raise TypeError(f"no JSON form for a statement parameter of type {type(value).__name__}")
