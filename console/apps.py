from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    """The finance console's pages that read across apps: a payment's whole story, and one search box for any id.
    It depends on every other app and nothing depends on it."""

    name = "console"
    verbose_name = "Finance console"
