"""Streaming a settlement file into a staging table with PostgreSQL COPY (psycopg 3), in bounded memory.

The file is read once, as a stream of chunks of whole lines, and COPY splits the lines into fields, in C: the
staging table has a text column per column of the header, and its identity column numbers the rows in the order COPY
receives them. Each physical line after the header becomes one row, so a row's number is its line's (the header is
line 1). Values are checked afterwards, in SQL (reconciliation/matching.py), where a whole column is checked at C
speed. Columns are found by their header names, so a report with more columns, or in another order, reads the same.

COPY reads its text format with a comma as the delimiter, not CSV: it has no quotes to look for, and staged the same
million lines in about half the time (the only characters it treats apart are the delimiter, the line breaks and the
backslash, and an empty field is an empty string). A line without quotes, backslashes or carriage returns reads the
same in COPY's text format as in the csv module.

COPY refuses a whole file for one line it cannot read, so each line is checked here first. A chunk whose lines hold
no quote, backslash, carriage return, NUL or \\x03 and are valid UTF-8, each with the header's number of fields
(commas, then), goes to COPY as it was read: counting a chunk's commas line by line is the only work done per line in
Python. Any other chunk is read line by line: a clean line goes as it was; the others are read by the csv module (a
quoted field may hold commas, quotes and line breaks, and so span several lines) and the record goes to COPY written
anew, each field escaped for the text format, at the number of its last line (the line a csv reader reports). A
line that cannot be read (not CSV, not UTF-8, the wrong number of fields) is reported with its line number and does
not crash the run; it, a blank line and each line of a record before its last go to COPY as a placeholder row (first
field \\x03), so that every later line keeps its number.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Callable, Iterator
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
CHUNK = 1 << 20
# The first field of a row that stands for no line of the report. A line holding \x03 is read by the csv module, and
# one whose first field is \x03 is refused, so no line of the report reads as a placeholder.
PLACEHOLDER = "\x03"
# What a line must not hold to go to COPY as it was read: quotes (its fields may hold commas: the csv module counts
# them), a backslash (COPY's escape, and "\." ends the data), a carriage return (a line break to COPY), what COPY
# refuses (NUL), and the placeholder's mark.
_NOT_AS_READ = (b'"', b"\\", b"\r", b"\x00", b"\x03")
# A field of a record read by the csv module, as COPY's text format reads it back.
_TEXT_ESCAPES = str.maketrans({"\\": "\\\\", ",": "\\,", "\n": "\\n", "\r": "\\r"})


class SettlementFileInvalid(Exception):
    """The file cannot be read as a settlement report at all (no header, a required column missing)."""


@dataclass
class IngestResult:
    lines: int = 0  # data lines read, malformed ones included: those rejected here, then the staged ones (runs.py)
    malformed: int = 0
    malformed_lines: list[dict[str, object]] = field(default_factory=list)
    checksum: str = ""
    # Per field of COLUMNS, the staging table's column holding it, or None: a column absent from the header.
    sources: dict[str, str | None] = field(default_factory=dict)

    def reject(self, line: int, error: str) -> None:
        self.malformed += 1
        if len(self.malformed_lines) < MALFORMED_KEPT:
            self.malformed_lines.append({"line": line, "error": error})


class _Chunks:
    """The file's bytes as chunks of whole lines (the last one may lack its line break), or line by line, hashing
    every byte read: the file's checksum costs no second read."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.pending = b""
        self.eof = False

    def _read(self) -> bytes:
        data = self.raw.read(CHUNK)
        if not data:
            self.eof = True
        self.sha.update(data)
        return data

    def chunk(self) -> bytes:
        while not self.eof:
            self.pending += self._read()
            end = self.pending.rfind(b"\n")
            if end >= 0:
                chunk, self.pending = self.pending[: end + 1], self.pending[end + 1 :]
                return chunk
        chunk, self.pending = self.pending, b""
        return chunk

    def readline(self) -> bytes:
        while b"\n" not in self.pending and not self.eof:
            self.pending += self._read()
        end = self.pending.find(b"\n")
        end = len(self.pending) if end < 0 else end + 1
        line, self.pending = self.pending[:end], self.pending[end:]
        return line


def _as_read(data: bytes) -> bool:
    """Whether COPY reads these lines' fields as the csv module would, the field counts aside."""
    if any(mark in data for mark in _NOT_AS_READ):
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def column(position: int) -> str:
    """The staging table's column for the header's field at ``position`` (1-based)."""
    return f"f{position}"


def split_query(table: str, staged: IngestResult) -> sql.Composed:
    """The staged lines, placeholders left out: (line_no, <each of COLUMNS>), a column absent from the header empty."""
    return sql.SQL("SELECT line_no, {fields} FROM {table} WHERE f1 <> {placeholder}").format(
        fields=sql.SQL(", ").join(
            sql.SQL("{} AS {}").format(sql.Identifier(source) if source else sql.Literal(""), sql.Identifier(name))
            for name, source in staged.sources.items()
        ),
        table=sql.Identifier(table),
        placeholder=sql.Literal(PLACEHOLDER),
    )


def file_stage(
    cursor: object, *, table: str, stream: IO[bytes], progress: Callable[[int], None] | None = None
) -> IngestResult:
    """Create ``table`` and COPY the file's lines into it. Raises SettlementFileInvalid.

    ``lines`` counts only the lines rejected here: the staged ones are counted in SQL."""
    chunks = _Chunks(stream)
    result = IngestResult()
    first = chunks.readline()
    try:
        header = next(csv.reader([first.decode("utf-8")]))
    except StopIteration:
        raise SettlementFileInvalid("the file is empty: no header line") from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise SettlementFileInvalid(f"the header line is not CSV: {exc}") from exc
    positions = {name: index + 1 for index, name in enumerate(header)}
    missing = [COLUMNS[name] for name in REQUIRED if COLUMNS[name] not in positions]
    if missing:
        raise SettlementFileInvalid(f"the header lacks the column(s) {', '.join(missing)}")
    result.sources = {
        name: column(positions[source]) if source in positions else None for name, source in COLUMNS.items()
    }
    width = len(header)
    columns = [sql.Identifier(column(position)) for position in range(1, width + 1)]
    cursor.execute(  # type: ignore[attr-defined]
        sql.SQL("CREATE UNLOGGED TABLE {} (line_no integer GENERATED ALWAYS AS IDENTITY (START WITH 2), {})").format(
            sql.Identifier(table), sql.SQL(", ").join(sql.SQL("{} text").format(name) for name in columns)
        )
    )
    # An empty field is an empty string, as the csv module reads it: the text format's NULL is \N, and a backslash
    # reaches COPY escaped.
    copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT text, DELIMITER ',')").format(
        sql.Identifier(table), sql.SQL(", ").join(columns)
    )
    stager = _Stager(chunks, width, result)
    with cursor.copy(copy_sql) as copy:  # type: ignore[attr-defined]
        while chunk := chunks.chunk():
            if b"\r" in chunk and b'"' not in chunk and chunk.count(b"\r") == chunk.count(b"\r\n"):
                chunk = chunk.replace(b"\r\n", b"\n")  # a report written with CRLF line breaks
            copy.write(stager.stage(chunk))
            if progress is not None:
                progress(stager.line_no - 1)
    result.checksum = chunks.sha.hexdigest()
    return result


class _Stager:
    """What COPY receives for each chunk of lines."""

    def __init__(self, chunks: _Chunks, width: int, result: IngestResult) -> None:
        self.chunks, self.width, self.result = chunks, width, result
        self.commas = width - 1
        self.line_no = 1  # the last line staged
        self.placeholder = (PLACEHOLDER + "," * self.commas + "\n").encode()

    def stage(self, chunk: bytes) -> bytes:
        if not chunk.endswith(b"\n"):
            chunk += b"\n"  # the file's last line, without its line break
        lines = chunk.split(b"\n")
        lines.pop()  # after the last line break
        if _as_read(chunk):
            commas = self.commas
            wrong = [index for index, line in enumerate(lines) if line.count(b",") != commas]
            if wrong:
                for index in wrong:
                    if lines[index]:  # a blank line is not a line of the report
                        fields = lines[index].count(b",") + 1
                        self._reject(self.line_no + 1 + index, f"{fields} fields, the header has {self.width}")
                    lines[index] = self.placeholder[:-1]
                chunk = b"\n".join(lines) + b"\n"
            self.line_no += len(lines)
            return chunk
        out = io.BytesIO()
        index = 0
        while index < len(lines):
            line = lines[index]
            index += 1
            if _as_read(line):
                self.line_no += 1
                fields = line.count(b",") + 1
                if fields == self.width:
                    out.write(line + b"\n")
                    continue
                out.write(self.placeholder)
                if line:  # a blank line is not a line of the report
                    self._reject(self.line_no, f"{fields} fields, the header has {self.width}")
                continue
            # A record for the csv module: its quoted fields may go on over the next lines, of this chunk or after.
            taken = 0

            def source(first: bytes) -> Iterator[str]:
                nonlocal index, taken
                data = first + b"\n"
                while data:
                    taken += 1
                    yield data.decode("utf-8")
                    if index < len(lines):
                        data, index = lines[index] + b"\n", index + 1
                    else:
                        data = self.chunks.readline()

            try:
                record: list[str] | None = next(csv.reader(source(line)), [])
                error = ""
            except (csv.Error, UnicodeDecodeError) as exc:
                record, error = None, f"not CSV: {exc}"
            if record is not None and any("\x00" in value for value in record):
                record, error = None, "not CSV: line contains NUL"  # which PostgreSQL cannot store
            self.line_no += taken
            out.write(self.placeholder * (taken - 1))
            if record is not None and len(record) == self.width and record[0] != PLACEHOLDER:
                out.write((",".join(value.translate(_TEXT_ESCAPES) for value in record) + "\n").encode())
                continue
            out.write(self.placeholder)
            if record is None:
                self._reject(self.line_no, error)
            elif record:  # [] is a blank line
                self._reject(
                    self.line_no,
                    f"{len(record)} fields, the header has {self.width}"
                    if len(record) != self.width
                    else "not CSV: a control character for a first field",
                )
        return out.getvalue()

    def _reject(self, line: int, error: str) -> None:
        self.result.lines += 1
        self.result.reject(line, error)
