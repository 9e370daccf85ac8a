"""The finance console's read-only building blocks: money rows are never added, changed or deleted in the admin."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import QuerySet, Subquery
from django.http import HttpRequest
from django.utils.functional import cached_property

# A filtered list is counted up to this many rows, and shown as "more than 10,000" beyond: counting every match of a
# filter over millions of rows reads them all, for a number nobody pages through.
COUNT_CAP = 10_000


class ApproximateCount(int):
    """A count that is not exact: compares as its number, prints as what it is ("about 1,000,000")."""

    text: str

    def __new__(cls, value: int, text: str) -> ApproximateCount:
        count = super().__new__(cls, value)
        count.text = text
        return count

    def __str__(self) -> str:
        return self.text


def _about(value: int) -> ApproximateCount:
    rounded = int(float(f"{value:.2g}"))  # two significant digits: the statistics are no more precise than that
    return ApproximateCount(rounded, f"about {rounded:,}")


class EstimatedCountPaginator(Paginator):
    """Django's paginator runs COUNT(*) over every row the list shows, which on an unfiltered list of a big table is
    a scan of all of it (seconds at millions of rows), on every page. This one takes an unfiltered list's size from
    PostgreSQL's statistics (pg_class.reltuples, kept by autovacuum), and counts a filtered list up to COUNT_CAP rows
    only. Small tables and short results are counted exactly, as before."""

    @cached_property
    def count(self) -> int:
        rows = self.object_list
        if not isinstance(rows, QuerySet):
            return len(rows)
        if not rows.query.has_filters() and not rows.query.distinct:
            estimate = self._table_estimate(rows)
            if estimate > COUNT_CAP:
                return _about(estimate)
        # The ordering only slows the capped count down: any COUNT_CAP + 1 rows will do.
        counted = rows.order_by()[: COUNT_CAP + 1].count()
        if counted > COUNT_CAP:
            return ApproximateCount(COUNT_CAP, f"more than {COUNT_CAP:,}")
        return counted

    @staticmethod
    def _table_estimate(rows: QuerySet[Any]) -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [rows.model._meta.db_table]
            )
            row = cursor.fetchone()
        return int(row[0]) if row else -1  # -1: never analysed


def one_id(rows: QuerySet[Any]) -> Subquery:
    """The primary key of the one row ``rows`` finds (by a unique id), as a scalar subquery: ``fk = (SELECT ...)``
    is a value PostgreSQL looks up once, so an OR of it with other columns still uses each column's index, where a
    join or an IN (SELECT ...) would read every row of the list's table."""
    return Subquery(rows.values("pk")[:1])


class IndexedValuesFilter(admin.AllValuesFieldListFilter):
    """Django's filter on a field's values, listing them by walking an index that starts with the field (a loose
    index scan: one index probe per distinct value, a recursive query) where Django's SELECT DISTINCT reads every row
    of the table (0.6 s for a webhook type over two million events), on every page of the list. The field must lead
    an index: that index serves the filter itself as well."""

    def __init__(
        self, field: Any, request: HttpRequest, params: Any, model: Any, model_admin: Any, field_path: str
    ) -> None:
        super().__init__(field, request, params, model, model_admin, field_path)
        table = connection.ops.quote_name(model._meta.db_table)
        column = connection.ops.quote_name(field.column)
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                WITH RECURSIVE value AS (
                    (SELECT {column} AS v FROM {table} WHERE {column} IS NOT NULL ORDER BY {column} LIMIT 1)
                    UNION ALL
                    SELECT (SELECT {column} FROM {table} WHERE {column} > value.v ORDER BY {column} LIMIT 1)
                    FROM value WHERE value.v IS NOT NULL
                )
                SELECT v FROM value WHERE v IS NOT NULL
                """  # noqa: S608 - only the model's own table and column names, quoted, are formatted in
            )
            values: list[Any] = [row[0] for row in cursor.fetchall()]
            if field.null:
                cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {table} WHERE {column} IS NULL)")  # noqa: S608 - same
                if cursor.fetchone()[0]:
                    values.append(None)
        self.lookup_choices = values  # type: ignore[assignment]  # iterated only, as Django's queryset is


class ReadOnlyAdmin(admin.ModelAdmin):
    show_full_result_count = False  # no COUNT(*) over the whole table on every page
    paginator = EstimatedCountPaginator

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
