"""Sign-ins and failed sign-ins go into the audit trail: break-glass use must never go unseen."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest

from accounts.models import Source, User
from portal import audit
from portal.audit import AuditAction, Target


@receiver(user_logged_in)
def _audit_sign_in(sender: Any, request: HttpRequest | None, user: User, **_: Any) -> None:
    # Local accounts sign in with a password only as break-glass: flagged so the dashboard shows each one.
    break_glass = user.source == Source.LOCAL
    audit.record(
        user,
        AuditAction.SIGNED_IN,
        target=user,
        source=user.source,
        superuser=user.is_superuser,
        break_glass=break_glass,
    )


@receiver(user_login_failed)
def _audit_failed_sign_in(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **_: Any
) -> None:
    # Django has already masked the password in `credentials`; keep only the name that was tried.
    attempted = str(credentials.get("username") or credentials.get("login") or "")[:150]
    audit.record(
        None, AuditAction.SIGN_IN_FAILED, target=Target(type="accounts.user", id="", label=attempted)
    )
