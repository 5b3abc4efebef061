from __future__ import annotations

from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Customs portal"

    def ready(self) -> None:
        from portal import findings, signals  # noqa: F401  (registers finding kinds and Celery hooks)
