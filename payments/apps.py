from __future__ import annotations

from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"

    def ready(self) -> None:
        from payments import transitions  # noqa: F401 - connects the transition log to django-fsm's signal
