from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class RegistriesConfig(AppConfig):
    name = "registries"
    verbose_name = "Registries"

    def ready(self) -> None:
        from registries.models import Registry, TokenSigningKey

        # The token server keeps registries and the signing key in per-process memory for a few
        # seconds; a change made in this process is seen at once, others' within that time.
        for model in (Registry, TokenSigningKey):
            post_save.connect(
                _forget_token_server_memory, sender=model, dispatch_uid=f"forget-{model.__name__}"
            )
            post_delete.connect(
                _forget_token_server_memory, sender=model, dispatch_uid=f"forget-{model.__name__}-d"
            )


def _forget_token_server_memory(**_: Any) -> None:
    from registries.tokenserver import keys, views

    keys.forget_signer()
    views.forget_services()
