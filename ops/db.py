"""Prepared statements, for the few statements that run on every request of a hot path.

Django binds parameters on the client side: each statement reaches PostgreSQL as new text, to be parsed and planned
again. For a statement that writes several tables in one go (the payment's, payments/services.py) that work cost
about as much as the writing itself. Here the statement is prepared once per connection, on the server, and
executed with its parameters bound there. psycopg keeps the prepared statements per connection, prepares again
after a reconnection, and PostgreSQL plans again after a migration changes a table the statement reads.

It runs on the connection and in the transaction of Django's default database, counted in the same metrics; what it
leaves out is Django's query log (``connection.queries`` under DEBUG). It needs a session-level connection: behind
a pooler in transaction mode, a prepared statement would not follow the session.
"""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.db.backends.postgresql.base import ServerBindingCursor
from django_prometheus.db.common import ExportingCursorWrapper

# The same counters as every other statement of the default database (django_prometheus's wrapper).
_PreparingCursor = ExportingCursorWrapper(ServerBindingCursor, "default", "postgresql")


def prepared_fetchall(sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Run ``sql`` (``%(name)s`` placeholders) as a prepared statement of the current connection; return its rows."""
    # Django's cursor first: it opens the connection, or replaces one that failed its health check.
    with connection.cursor() as django_cursor, connection.wrap_database_errors:
        cursor = _PreparingCursor(django_cursor.cursor.connection)
        try:
            cursor.execute(sql, params, prepare=True)
            return cursor.fetchall()
        finally:
            cursor.close()
