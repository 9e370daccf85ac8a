from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from api.errors import ApiError
from api.models import ApiClient, Scope
from api.services import api_client_create


class Command(BaseCommand):
    help = "Create a storefront API client and print its API key (shown this once only)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument(
            "--scopes",
            default=",".join(Scope.values),
            help=f"Comma-separated, from {', '.join(Scope.values)} (default: all).",
        )

    def handle(self, *args: Any, name: str, scopes: str, **options: Any) -> None:
        if ApiClient.objects.filter(name=name).exists():
            raise CommandError(f"An API client named {name!r} already exists.")
        try:
            issued = api_client_create(name=name, scopes=[s.strip() for s in scopes.split(",") if s.strip()])
        except ApiError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(
            f"API client {name!r} created, scopes {', '.join(issued.api_key.scopes)}. Its key, shown this once only:\n"
        )
        self.stdout.write(issued.key)
