"""What the card-data scan (scripts/cardscan.py) reads of the database, written while a run has it.

With ``CARD_SCAN_DIR`` set (``make test`` sets it), two things land in that directory:

- ``rows-<pid>.tsv``: every row of every table as each test leaves it, taken just before pytest-django rolls the
  test's transaction back or flushes the tables. Without it the scan would see an almost empty database: nothing a
  test writes outlives the test.
- ``database.sql``: a ``pg_dump`` of the test database just before it is destroyed (what outlived every test: the
  migrations' rows, anything a process of its own committed after the last flush).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

from django.db import DatabaseError, connections
from django.db.transaction import TransactionManagementError
from django.test import TestCase, TransactionTestCase

DIRECTORY = os.environ.get("CARD_SCAN_DIR", "")


def enabled() -> bool:
    return bool(DIRECTORY)


def install() -> None:
    """Snapshot the rows before every test's own teardown of the database (rollback or flush)."""
    for case in (TestCase, TransactionTestCase):
        case._fixture_teardown = _snapshot_first(case._fixture_teardown)  # type: ignore[method-assign]


def _snapshot_first(teardown: Callable[[Any], None]) -> Callable[[Any], None]:
    @wraps(teardown)
    def wrapped(self: Any) -> None:
        try:
            for alias in self._databases_names(include_mirrors=False):
                snapshot_rows(Path(DIRECTORY), alias)
        except (DatabaseError, TransactionManagementError):
            # A test that left its transaction broken has nothing readable; its rows are rolled back unseen, and
            # the snapshot must not turn its teardown into an error.
            pass
        finally:
            teardown(self)

    return wrapped


# Written by the migrations alone and never by a test, a few thousand rows copied after every test for nothing: the
# dump at the end holds them.
_STATIC = {"django_migrations", "django_content_type", "auth_permission"}


def snapshot_rows(directory: Path, alias: str = "default") -> None:
    connection = connections[alias]
    if connection.connection is None or not connection.is_usable():
        return
    tables = set(connection.introspection.django_table_names(only_existing=True, include_views=False)) - _STATIC
    if not tables:
        return
    quote = connection.ops.quote_name
    # One statement for every table: each row as PostgreSQL's text of the whole record.
    # Table names from Django's introspection, quoted: nothing outside the schema reaches this SQL.
    query = " UNION ALL ".join(f"SELECT %s, t::text FROM {quote(table)} t" for table in sorted(tables))  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(query, sorted(tables))
        rows = cursor.fetchall()
    if rows:
        path = directory / f"rows-{os.getpid()}.tsv"
        with path.open("a", encoding="utf-8") as out:
            for table, text in rows:
                out.write(f"{table}\t{_one_line(text)}\n")


def _one_line(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def dump_database(directory: Path, alias: str = "default") -> Path:
    """``pg_dump`` the database (plain SQL, data included) into the directory, with the first pg_dump that works:
    the embedded server's own, then the one on PATH (a pg_dump older than the server refuses to dump it)."""
    settings = connections[alias].settings_dict
    env = {**os.environ, "PGDATABASE": settings["NAME"]}
    for key, variable in (("HOST", "PGHOST"), ("PORT", "PGPORT"), ("USER", "PGUSER"), ("PASSWORD", "PGPASSWORD")):
        if settings.get(key):
            env[variable] = str(settings[key])
    target = directory / "database.sql"
    errors = []
    for binary in _pg_dumps():
        result = subprocess.run(  # noqa: S603 - a pg_dump binary and our own arguments
            [binary, "--no-owner", "--no-privileges", "--file", str(target)], env=env, capture_output=True, text=True
        )
        if result.returncode == 0:
            return target
        errors.append(f"{binary}: {result.stderr.strip()}")
    raise RuntimeError("no pg_dump could dump the test database for the card-data scan:\n" + "\n".join(errors))


def _pg_dumps() -> list[str]:
    found = []
    try:
        import pgserver

        bundled = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_dump"
        if bundled.exists():
            found.append(str(bundled))
    except ImportError:
        pass
    on_path = shutil.which("pg_dump")
    if on_path:
        found.append(on_path)
    return found
