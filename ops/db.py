"""Prepared statements, for the few statements that run on every request of a hot path.

Django binds parameters on the client side: each statement reaches PostgreSQL as new text, to be parsed and planned
again. For a statement that writes several tables in one go (the payment's, payments/services.py) that work cost
about as much as the writing itself. A ``PreparedStatement`` is PREPAREd once per database connection, and each use
is an EXECUTE with the values: the plan is PostgreSQL's to keep, and to redo when a migration changes a table.

SQL's PREPARE, not the protocol's: it goes through Django's cursor like any other statement (metrics, query capture,
error wrapping), and a rolled-back transaction leaves it in place (psycopg drops its own prepared statements on every
rollback). It needs a session-level connection: behind a pooler in transaction mode, the statement would not follow
the session.
"""

from __future__ import annotations

import re
import weakref
from typing import Any

from django.db import connection

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


class PreparedStatement:
    """``sql`` with ``%(name)s`` placeholders, each typed where PostgreSQL cannot infer its type from its use (a cast
    such as ``%(amounts)s::numeric[]``): PREPARE fixes every parameter's type once, from its first use."""

    def __init__(self, name: str, sql: str) -> None:
        self.name = name
        self.parameters: list[str] = []

        def number(match: re.Match[str]) -> str:
            parameter = match.group(1)
            if parameter not in self.parameters:
                self.parameters.append(parameter)
            return f"${self.parameters.index(parameter) + 1}"

        self._prepare = f"PREPARE {name} AS {_PLACEHOLDER.sub(number, sql)}"
        self._execute = f"EXECUTE {name} ({', '.join(['%s'] * len(self.parameters))})"
        # The connections (psycopg's, one per Django connection) on which this statement is prepared: a new one,
        # after a reconnection, prepares it again.
        self._prepared_on: weakref.WeakSet[Any] = weakref.WeakSet()

    def fetchall(self, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """EXECUTE the statement with ``params`` (name → value) on the current connection; return its rows."""
        with connection.cursor() as cursor:
            session = connection.connection
            if session not in self._prepared_on:
                cursor.execute(self._prepare)
                self._prepared_on.add(session)
            cursor.execute(self._execute, [params[parameter] for parameter in self.parameters])
            return cursor.fetchall()
