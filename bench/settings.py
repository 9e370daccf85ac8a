"""The project's settings, with the ``bench`` app and its ceiling endpoint, on a database of its own.

The database is always ``<name>_bench`` for the ``<name>`` in DATABASE_URL (a name already ending in ``_bench`` is
kept), so these settings can never write into the developer's database, whoever starts them.
"""

from __future__ import annotations

from config.settings import *  # noqa: F403
from config.settings import DATABASES, INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "bench"]
ROOT_URLCONF = "bench.urls"

if not DATABASES["default"]["NAME"].endswith("_bench"):
    DATABASES["default"]["NAME"] = f"{DATABASES['default']['NAME']}_bench"
