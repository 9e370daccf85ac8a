"""The card-data scan: no card number in what a test run logged or stored (DESIGN.md "Security", no card data).

    python scripts/cardscan.py PATH [PATH ...]   # files, or directories (every file in them); exit 1 on any hit

``make test`` runs it after pytest on the run's directory (scripts/devstack.py): the log file every process of the
run appended to (``LOG_FILE``), the sandbox's process output, the rows each test left in the database just before
they were rolled back or flushed (``rows-*.tsv``, tests/conftest.py), and a ``pg_dump`` of the test database taken
just before it was destroyed (``database.sql``).

A card number here is what the API's guard refuses (api/carddata.py), found by code of its own so that a fault in
the guard cannot blind the check that watches it: 13-19 digits passing the Luhn check, whole groups of a run of digits
parted by single spaces or dashes. Digits after a decimal point are a fraction, not a card number (a duration such as
``0.0367946749997828`` passes the Luhn check one time in ten). Timestamps, amounts, ids and tab-separated columns make
no such run: their digits are parted by ``:``, ``.``, ``T``, letters or tabs.

Standard library only, like devstack.py.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

# The sandbox PSP stands in for Stripe and keeps its state in tables of its own in the same database. A PSP is the
# one party that may hold card numbers (the hosted page is where a buyer types one), so those tables are the PSP's
# data, not ours: a hit there is reported but does not fail the scan. Its process logs are scanned like ours.
PSP_TABLE_PREFIXES = ("psp_sandbox_",)

_RUN = re.compile(r"(?<![0-9])[0-9]+(?:[ -][0-9]+)*")
_GROUP = re.compile(r"[0-9]+")
# A hex digest or a dashless UUID (a key's hash, a request fingerprint): 32 or more hex characters, letters among them,
# not part of a longer word. Its digits are no card number, yet a 64-character digest holds a Luhn-valid run of 13-19
# digits about once in a hundred; such a token is blanked before the scan. A card number glued to hex letters into
# one token that long is the price.
_HEX_TOKEN = re.compile(r"(?<![0-9A-Za-z])(?=[0-9]*[A-Fa-f])[0-9A-Fa-f]{32,}(?![0-9A-Za-z])")
_COPY = re.compile(r"^COPY (?:[\w\"]+\.)?\"?(?P<table>[\w]+)\"? ")
MIN_DIGITS, MAX_DIGITS = 13, 19
EXCERPT_CONTEXT = 30
MAX_PRINTED = 50


@dataclass(frozen=True)
class Hit:
    source: str  # file, and line
    where: str  # a log file: "log"; a dump or row snapshot: "table <name>"
    excerpt: str  # the surroundings, the number itself masked
    ignored: bool = False  # in the PSP's own tables

    def __str__(self) -> str:
        note = "  (the PSP's own table: not failing)" if self.ignored else ""
        return f"{self.source}: {self.where}: {self.excerpt}{note}"


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def card_spans(text: str) -> Iterator[tuple[int, int]]:
    """Where ``text`` holds a card number: start and end of each."""
    text = _HEX_TOKEN.sub(lambda token: "x" * len(token.group()), text)
    for run in _RUN.finditer(text):
        start = run.start()
        if start >= 2 and text[start - 1] == "." and text[start - 2].isdigit():
            continue  # the fraction of a decimal number
        groups = [(group.start(), group.end()) for group in _GROUP.finditer(run.group())]
        first = 0
        while first < len(groups):
            digits, found = "", False
            for last in range(first, len(groups)):
                digits += run.group()[groups[last][0] : groups[last][1]]
                if len(digits) > MAX_DIGITS:
                    break
                if len(digits) >= MIN_DIGITS and luhn_valid(digits):
                    yield start + groups[first][0], start + groups[last][1]
                    first, found = last + 1, True
                    break
            if not found:
                first += 1


def mask(number: str) -> str:
    """First and last four digits kept (fewer than PCI DSS allows shown), the rest starred, separators as they were."""
    digits = [index for index, char in enumerate(number) if char.isdigit()]
    hidden = set(digits[4:-4])
    return "".join("*" if index in hidden else char for index, char in enumerate(number))


def excerpt(text: str, start: int, end: int) -> str:
    before = text[max(0, start - EXCERPT_CONTEXT) : start]
    after = text[end : end + EXCERPT_CONTEXT]
    return repr(f"{before}{mask(text[start:end])}{after}")


def scan_lines(lines: Iterable[str], source: str) -> Iterator[Hit]:
    """Every card number in a log file, a ``pg_dump`` in plain format, or a row snapshot (``table<TAB>row``)."""
    table: str | None = None
    snapshot = Path(source).name.startswith("rows-")
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip("\n")
        if snapshot:
            row_table, _, row = line.partition("\t")
            where, text = f"table {row_table}", row
        else:
            copy = _COPY.match(line)
            if copy is not None:
                table = copy.group("table")
                continue
            if line.startswith("\\."):
                table = None
                continue
            where, text = (f"table {table}" if table else "log"), line
        for start, end in card_spans(text):
            ignored = where.startswith("table ") and where[6:].startswith(PSP_TABLE_PREFIXES)
            yield Hit(f"{source}:{number}", where, excerpt(text, start, end), ignored)


def scan_paths(paths: Iterable[Path]) -> list[Hit]:
    hits: list[Hit] = []
    for path in paths:
        files = sorted(item for item in path.rglob("*") if item.is_file()) if path.is_dir() else [path]
        for file in files:
            with file.open(encoding="utf-8", errors="replace") as handle:
                hits.extend(scan_lines(handle, str(file)))
    return hits


def report(hits: list[Hit], out: TextIO | None = None) -> bool:
    """Print the hits; True when none fails the scan."""
    out = out or sys.stdout
    failing = [hit for hit in hits if not hit.ignored]
    for hit in hits[:MAX_PRINTED]:
        print(f"cardscan: {hit}", file=out)
    if len(hits) > MAX_PRINTED:
        print(f"cardscan: ... and {len(hits) - MAX_PRINTED} more", file=out)
    print(
        f"cardscan: {len(failing)} card number(s) found"
        + (f", {len(hits) - len(failing)} in the PSP's own tables" if len(hits) != len(failing) else ""),
        file=out,
    )
    return not failing


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", type=Path, help="files, or directories to scan every file of")
    args = parser.parse_args(argv)
    missing = [str(path) for path in args.paths if not path.exists()]
    if missing:
        print(f"cardscan: no such file or directory: {', '.join(missing)}", file=sys.stderr)
        return 2
    return 0 if report(scan_paths(args.paths)) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
