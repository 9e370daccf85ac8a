"""Demo data for a newcomer's ``make run``: a storefront API key, two admin users and three sellers.

Idempotent, so it runs on every start. The secrets it hands out (the API key, the passwords) are generated once and
kept under ``var/`` with mode 600, so the values printed at each start are the ones that work.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from api.models import ApiClient, ApiKey
from api.services import api_client_create, api_key_issue, hash_api_key
from wallets.models import Seller

CLIENT_NAME = "demo-storefront"
SELLERS = {"seller_7": "Ada's Ceramics", "seller_9": "Bolt Bikes", "seller_12": "Cedar Books"}


@dataclass(frozen=True)
class DemoUser:
    username: str
    password: str
    role: str


def _var_dir() -> Path:
    path = Path(settings.BASE_DIR) / "var"
    path.mkdir(exist_ok=True)
    return path


def _write_secret(path: Path, text: str) -> None:
    """Write a file only its owner can read, replacing it atomically so a crash never leaves half a secret."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(tmp, 0o600)  # the mode given to os.open is filtered by the umask
    os.replace(tmp, path)


def _read_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""


def _demo_api_key() -> tuple[ApiClient, str]:
    key_file = _var_dir() / "demo_api_key"
    key = _read_text(key_file)
    client = ApiClient.objects.filter(name=CLIENT_NAME).first()
    if client is not None and key:
        stored = ApiKey.objects.filter(client=client, key_hash=hash_api_key(key)).select_related("client").first()
        if stored is not None and stored.usable():
            return client, key
    if client is not None and not client.payments.exists():
        # Nothing hangs off it yet, so the cleanest fix for a lost key is a fresh client.
        client.delete()
        client = None
    if client is None:
        issued = api_client_create(name=CLIENT_NAME)
        _write_secret(key_file, issued.key + "\n")
        return issued.client, issued.key
    # The client has payments (PROTECT keeps it), so it gets a new key. The demo client exists to be used, so a
    # revocation of the client is undone too.
    ApiClient.objects.filter(pk=client.pk).update(revoked_at=None)
    client.refresh_from_db()
    issued = api_key_issue(client=client, scopes=None, actor="seed_demo", reason="the demo key file was lost")
    _write_secret(key_file, issued.key + "\n")
    return client, issued.key


def _demo_users() -> list[DemoUser]:
    password_file = _var_dir() / "demo_passwords.json"
    stored = _read_text(password_file)
    passwords: dict[str, str] = json.loads(stored) if stored else {}
    changed = False
    for username in ("admin", "finance", "operator", "approver"):
        if not passwords.get(username):
            passwords[username] = secrets.token_urlsafe(12)
            changed = True
    if changed:
        _write_secret(password_file, json.dumps(passwords, indent=2) + "\n")

    user_model = get_user_model()
    with transaction.atomic():
        admin, _ = user_model.objects.update_or_create(
            username="admin",
            defaults={"is_staff": True, "is_superuser": True, "is_active": True, "email": "admin@example.com"},
        )
        # One demo person per finance role (the groups come from audit/migrations/0003_finance_groups.py).
        staff = {}
        for username, group in (
            ("finance", "finance viewer"),
            ("operator", "finance operator"),
            ("approver", "finance approver"),
        ):
            staff[username], _ = user_model.objects.update_or_create(
                username=username,
                defaults={
                    "is_staff": True,
                    "is_superuser": False,
                    "is_active": True,
                    "email": f"{username}@example.com",
                },
            )
            staff[username].groups.set(Group.objects.filter(name=group))
            staff[username].user_permissions.clear()
        for user in (admin, *staff.values()):
            # Reapplied every run, so the password printed at start is the one that works even if someone changed it.
            if not user.check_password(passwords[user.username]):
                user.set_password(passwords[user.username])
                user.save(update_fields=["password"])
    return [
        DemoUser("admin", passwords["admin"], "superuser"),
        DemoUser("finance", passwords["finance"], "finance viewer: reads everything, changes nothing"),
        DemoUser("operator", passwords["operator"], "finance operator: resolves findings, replays, releases, pays out"),
        DemoUser("approver", passwords["approver"], "finance approver: approves adjustments others proposed"),
    ]


def _demo_sellers() -> list[Seller]:
    with transaction.atomic():
        return [
            # Each with a connected account at the sandbox PSP, so that payouts can be tried at once.
            Seller.objects.update_or_create(
                account=account, defaults={"display_name": name, "payout_account": f"acct_demo_{account}"}
            )[0]
            for account, name in SELLERS.items()
        ]


class Command(BaseCommand):
    help = "Create or refresh the demo API client, admin users and sellers, and print their credentials."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print the credentials as one JSON document.")

    def handle(self, *args: Any, **options: Any) -> None:
        client, key = _demo_api_key()
        users = _demo_users()
        sellers = _demo_sellers()
        if options["json"]:
            document = {
                "api_client": {"name": client.name, "key": key},
                "users": [asdict(user) for user in users],
                "sellers": [{"account": seller.account, "display_name": seller.display_name} for seller in sellers],
            }
            self.stdout.write(json.dumps(document))
            return
        self.stdout.write(f"Demo API key ({client.name}): {key}")
        for user in users:
            self.stdout.write(f"Admin user {user.username} / {user.password}  ({user.role})")
        for seller in sellers:
            self.stdout.write(f"Seller {seller.account}: {seller.display_name}")
