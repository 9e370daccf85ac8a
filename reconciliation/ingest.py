"""Streaming a settlement file into a staging table with PostgreSQL COPY (psycopg 3), in bounded memory.

The file is read once, as a stream: each line is parsed by the csv module and written to COPY at once, so memory
holds a line and COPY's buffer, whatever the file's size. A line with the wrong number of fields cannot be staged and
is reported with its line number; values are checked afterwards, in SQL (reconciliation/matching.py), where a whole
column is checked at C speed. Columns are found by their header names, so a report with more columns, or in another
order, reads the same.
"""

from __future__ import annotations

import csv
import hashlib
import io
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

from psycopg import sql

# The settlement line's fields we use, by their Stripe report column names (itemized payout reconciliation).
COLUMNS = {
    "balance_transaction_id": "balance_transaction_id",
    "available_on_utc": "available_on_utc",
    "currency": "currency",
    "gross": "gross",
    "fee": "fee",
    "net": "net",
    "reporting_category": "reporting_category",
    "source_id": "source_id",
    "payment_intent_id": "payment_intent_id",
    "payment_order_id": "payment_metadata[payment_order_id]",
    "payment_id": "payment_metadata[payment_id]",
    "refund_id": "refund_metadata[refund_id]",
    "payout_id": "transfer_metadata[payout_id]",
}
# Without these a line cannot be matched at all; the others may be absent from the header (left empty).
REQUIRED = ("balance_transaction_id", "currency", "gross", "fee", "net", "reporting_category", "source_id")
MALFORMED_KEPT = 100
PROGRESS_EVERY = 50_000


class SettlementFileInvalid(Exception):
    """The file cannot be read as a settlement report at all (no header, a required column missing)."""


@dataclass
class IngestResult:
    lines: int = 0  # data lines read, malformed ones included
    malformed: int = 0
    malformed_lines: list[dict[str, object]] = field(default_factory=list)
    checksum: str = ""

    def reject(self, line: int, error: str) -> None:
        self.malformed += 1
        if len(self.malformed_lines) < MALFORMED_KEPT:
            self.malformed_lines.append({"line": line, "error": error})


class _Hashing(io.RawIOBase):
    """Passes a binary stream through, hashing every byte read: the file's checksum costs no second read."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        chunk = self.raw.read(len(buffer))
        if not chunk:
            return 0
        self.sha.update(chunk)
        buffer[: len(chunk)] = chunk
        return len(chunk)


def stage_table_create(cursor: object, table: str) -> None:
    columns = sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(name)) for name in COLUMNS)
    cursor.execute(  # type: ignore[attr-defined]
        sql.SQL("CREATE UNLOGGED TABLE {} (line_no integer NOT NULL, {})").format(sql.Identifier(table), columns)
    )


def file_stage(
    cursor: object, *, table: str, stream: IO[bytes], progress: Callable[[int], None] | None = None
) -> IngestResult:
    """COPY the file's lines into ``table`` (created by stage_table_create). Raises SettlementFileInvalid."""
    hashing = _Hashing(stream)
    text = io.TextIOWrapper(io.BufferedReader(hashing, buffer_size=1 << 16), encoding="utf-8", newline="")
    reader = csv.reader(text)
    result = IngestResult()
    try:
        header = next(reader)
    except StopIteration:
        raise SettlementFileInvalid("the file is empty: no header line") from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise SettlementFileInvalid(f"the header line is not CSV: {exc}") from exc
    positions = {name: index for index, name in enumerate(header)}
    missing = [COLUMNS[name] for name in REQUIRED if COLUMNS[name] not in positions]
    if missing:
        raise SettlementFileInvalid(f"the header lacks the column(s) {', '.join(missing)}")
    width = len(header)
    # Each good row gets its line number and an empty field appended (positions width and width + 1), so that one
    # itemgetter, in C, picks the staged fields in order: a column absent from the header reads as that empty field.
    pick = operator.itemgetter(width, *(positions.get(column, width + 1) for column in COLUMNS.values()))
    copy_sql = sql.SQL("COPY {} (line_no, {}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(name) for name in COLUMNS)
    )
    with cursor.copy(copy_sql) as copy:  # type: ignore[attr-defined]
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except (csv.Error, UnicodeDecodeError) as exc:
                result.lines += 1
                result.reject(reader.line_num, f"not CSV: {exc}")
                continue
            result.lines += 1
            if len(row) != width:
                if row:  # a blank line is not a line of the report
                    result.reject(reader.line_num, f"{len(row)} fields, the header has {width}")
                else:
                    result.lines -= 1
                continue
            row.append(str(reader.line_num))
            row.append("")
            copy.write_row(pick(row))
            if progress is not None and result.lines % PROGRESS_EVERY == 0:
                progress(result.lines)
    result.checksum = hashing.sha.hexdigest()
    return result
