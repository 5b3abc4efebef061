from __future__ import annotations

from pathlib import Path

from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Customs portal"

    def ready(self) -> None:
        from portal import findings, signals  # noqa: F401  (registers finding kinds and Celery hooks)

        ensure_embedded_broker_folders()


def ensure_embedded_broker_folders() -> None:
    """The embedded (filesystem) broker needs its folders before the first task is queued.

    Any process may queue first: the web server, a management command such as `demo`, or the
    worker. Creating them here, where every process starts, means none of them can find them missing.
    """
    from django.conf import settings

    options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {})
    if settings.CELERY_BROKER_URL != "filesystem://":
        return
    for key in ("data_folder_in", "data_folder_out", "control_folder"):
        if options.get(key):
            Path(options[key]).mkdir(parents=True, exist_ok=True)
