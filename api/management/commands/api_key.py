from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from api.errors import ApiError
from api.models import ApiKey
from api.services import api_key_revoke, api_key_rotate


class Command(BaseCommand):
    help = (
        "Rotate or revoke a storefront API key, named by its visible prefix (mpk_…). Rotation prints the new key "
        "once; the old one keeps working for the overlap."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("operation", choices=["rotate", "revoke", "list"])
        parser.add_argument("prefix", nargs="?", default="", help="The key's prefix, as the admin shows it.")
        parser.add_argument("--overlap-hours", type=int, default=24, help="rotate: how long the old key still works.")
        parser.add_argument("--reason", default="", help="Kept in the audit trail.")

    def handle(self, *args: Any, operation: str, prefix: str, overlap_hours: int, reason: str, **options: Any) -> None:
        if operation == "list":
            for key in ApiKey.objects.select_related("client").order_by("client__name", "created_at"):
                state = (
                    "revoked"
                    if key.revoked_at
                    else (f"ends {key.expires_at:%Y-%m-%d %H:%M}" if key.expires_at else "live")
                )
                self.stdout.write(f"{key.prefix}…  {key.client.name}  {','.join(key.scopes)}  {state}")
            return
        keys = list(ApiKey.objects.filter(prefix=prefix)) if prefix else []
        if len(keys) != 1:
            raise CommandError(f"No single key has the prefix {prefix!r} (found {len(keys)}); see `api_key list`.")
        actor = "manage.py api_key"
        try:
            if operation == "revoke":
                api_key_revoke(key_id=keys[0].pk, actor=actor, reason=reason)
                wait = settings.API_KEY_CACHE_SECONDS
                self.stdout.write(f"Key {prefix}… revoked: refused everywhere within {wait} s.")
                return
            issued = api_key_rotate(
                key_id=keys[0].pk, overlap=timedelta(hours=overlap_hours), actor=actor, reason=reason
            )
        except ApiError as exc:
            raise CommandError(exc.message) from None
        wait = settings.API_KEY_CACHE_SECONDS
        self.stdout.write(
            f"Key {prefix}… ends in {overlap_hours} h (every web process notices within {wait} s after that). "
            "The new key, shown this once only:\n"
        )
        self.stdout.write(issued.key)
