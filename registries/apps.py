from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class RegistriesConfig(AppConfig):
    name = "registries"
    verbose_name = "Registries"

    def ready(self) -> None:
        from accounts.models import PersonalToken, RobotToken
        from portal.models import AuditEvent
        from registries import signals
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
        # Customs' own tokens are listed with the registries' credentials: copy them in as they change.
        for token in (PersonalToken, RobotToken):
            post_save.connect(signals.token_changed, sender=token, dispatch_uid=f"copy-{token.__name__}")
            post_delete.connect(signals.token_changed, sender=token, dispatch_uid=f"copy-{token.__name__}-d")
        post_save.connect(signals.event_recorded, sender=AuditEvent, dispatch_uid="copy-revoked-tokens")


def _forget_token_server_memory(**_: Any) -> None:
    from registries.tokenserver import keys, views

    keys.forget_signer()
    views.forget_services()
