"""WSGI entry point of the sandbox PSP: ``gunicorn psp_sandbox.wsgi:application --bind 127.0.0.1:8100``."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "psp_sandbox.settings")

application = get_wsgi_application()
