"""``manage.py chaos``: the chaos run (bench/chaos.py), on a database and a Redis of its own."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = "Drive payments through the whole system while its parts fail; check nothing was lost or charged twice."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("args", nargs="*", help="bench/chaos.py's options, after --: --payments, --seed, ...")

    def handle(self, *args: Any, **options: Any) -> None:
        from bench.chaos import main

        code = main(list(args))
        sys.stdout.flush()
        if code:
            raise CommandError(f"the chaos run failed (exit {code})", returncode=code)
