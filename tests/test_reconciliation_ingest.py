"""Staging a settlement file (reconciliation/ingest.py): COPY splits the lines whose chunk it can read as it is; the
csv module reads the others; every line keeps its number, and the lines that cannot be read are reported by it."""

from __future__ import annotations

import io

import pytest
from django.db import connection

from reconciliation import ingest

pytestmark = pytest.mark.django_db

HEADER = b"balance_transaction_id,currency,gross,fee,net,reporting_category,source_id\n"


def stage(data: bytes, chunk: int = ingest.CHUNK) -> tuple[ingest.IngestResult, list[tuple[object, ...]]]:
    with connection.cursor() as cursor:
        old, ingest.CHUNK = ingest.CHUNK, chunk
        try:
            result = ingest.file_stage(cursor, table="test_stage", stream=io.BytesIO(data))
        finally:
            ingest.CHUNK = old
        cursor.execute(ingest.split_query("test_stage", result).as_string(cursor.connection) + " ORDER BY line_no")
        rows = cursor.fetchall()
        cursor.execute("DROP TABLE test_stage")
    return result, rows


@pytest.mark.parametrize("chunk", [ingest.CHUNK, 16])
def test_every_line_keeps_its_number_and_the_unreadable_ones_are_reported(chunk: int) -> None:
    # given clean lines, a blank one, a quoted record over two lines with CRLF, a line with too few fields, a NUL,
    # a control character, invalid UTF-8, a doubled quote and a last line without its line break
    data = HEADER + (
        b"txn_1,eur,1.00,0.10,0.90,charge,ch_1\n"
        b"\n"
        b'"txn_2","eur","1,5",0.1,1.4,charge,"ch\n2"\r\n'
        b"broken\n"
        b"txn_\x00,eur,1.00,0.10,0.90,charge,x\n"
        b"txn_4,eur,1.00,0.10,0.90,charge,ch_\x01\\.\n"
        b"\xff\xfe,a\n"
        b'txn_5,eur,1.00,0.10,0.90,charge,"q""x"\n'
        b"\x03,eur,1,0,1,charge,x\n"
        b"txn_6,eur,1.00,0.10,0.90,charge,last"
    )

    # when
    result, rows = stage(data, chunk)

    # then
    assert [(row[0], row[1], row[8]) for row in rows] == [
        (2, "txn_1", "ch_1"),
        (5, "txn_2", "ch\n2"),
        (8, "txn_4", "ch_\x01\\."),
        (10, "txn_5", 'q"x'),
        (12, "txn_6", "last"),
    ]
    assert rows[1][4] == "1,5"
    assert rows[0][2] == ""  # available_on_utc, absent from the header, reads as empty
    assert [(item["line"], str(item["error"]).split(":")[0]) for item in result.malformed_lines] == [
        (6, "1 fields, the header has 7"),
        (7, "not CSV"),
        (9, "not CSV"),
        (11, "not CSV"),
    ]
    assert result.lines == result.malformed == 4


@pytest.mark.parametrize("chunk", [ingest.CHUNK, 16])
def test_backslashes_commas_and_line_breaks_in_fields_are_data(chunk: int) -> None:
    # given fields holding what COPY's text format would otherwise read as an escape (octal, hex), a NULL, the end
    # of the data, a delimiter or a line break, quoted or not
    data = HEADER + (
        b"txn_1,eur,1.00,0.10,0.90,charge,C:\\dir\\n\n"
        b"txn_2,eur,1.00,0.10,0.90,charge,\\N\n"
        b"\\.\n"
        b'txn_3,eur,1.00,0.10,0.90,charge,"a,\\,b\r\nc\\"\n'
        b"txn_4,eur,1.00,0.10,0.90,charge,\\101\\x41\n"
    )

    # when
    result, rows = stage(data, chunk)

    # then each value is the line's, byte for byte, and the lone "\." is only a line with too few fields
    assert [(row[0], row[1], row[8]) for row in rows] == [
        (2, "txn_1", "C:\\dir\\n"),
        (3, "txn_2", "\\N"),
        (6, "txn_3", "a,\\,b\r\nc\\"),
        (7, "txn_4", "\\101\\x41"),
    ]
    assert result.malformed_lines == [{"line": 4, "error": "1 fields, the header has 7"}]


def test_clean_lines_go_to_copy_as_read_with_empty_fields_empty_and_tabs_kept() -> None:
    # given a file with nothing for the csv module to read: a tab in a field and an empty field
    data = HEADER + b"txn_1,eur,1.00,0.10,0.90,charge,a\tb\ntxn_2,eur,2.00,0.10,1.90,,ch_2\n"

    # when
    result, rows = stage(data)

    # then
    assert [(row[0], row[1], row[7], row[8]) for row in rows] == [
        (2, "txn_1", "charge", "a\tb"),
        (3, "txn_2", "", "ch_2"),
    ]
    assert result.malformed_lines == []


def test_a_report_written_with_crlf_line_breaks_reads_as_the_same_lines() -> None:
    lines = [b"txn_1,eur,1.00,0.10,0.90,charge,ch_1", b"txn_2,eur,2.00,0.10,1.90,charge,ch_2", b"short,line"]

    result, rows = stage(HEADER.replace(b"\n", b"\r\n") + b"\r\n".join(lines) + b"\r\n")

    assert [(row[0], row[1], row[8]) for row in rows] == [(2, "txn_1", "ch_1"), (3, "txn_2", "ch_2")]
    assert result.malformed_lines == [{"line": 4, "error": "2 fields, the header has 7"}]


def test_a_header_without_a_required_column_refuses_the_file() -> None:
    with pytest.raises(ingest.SettlementFileInvalid, match="source_id"), connection.cursor() as cursor:
        ingest.file_stage(cursor, table="test_stage", stream=io.BytesIO(b"balance_transaction_id,currency\n"))
