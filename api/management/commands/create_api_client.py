from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from api.models import ApiClient
from api.services import api_client_create


class Command(BaseCommand):
    help = "Create a storefront API client and print its API key (shown this once only)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")

    def handle(self, *args: Any, name: str, **options: Any) -> None:
        if ApiClient.objects.filter(name=name).exists():
            raise CommandError(f"An API client named {name!r} already exists.")
        issued = api_client_create(name=name)
        self.stdout.write(f"API client {name!r} created. Its key, shown this once only:\n")
        self.stdout.write(issued.key)
