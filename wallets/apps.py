from __future__ import annotations

from django.apps import AppConfig


class WalletsConfig(AppConfig):
    name = "wallets"
