from __future__ import annotations

from django.apps import AppConfig


class PspSandboxConfig(AppConfig):
    name = "psp_sandbox"
    verbose_name = "PSP sandbox"
