"""The notifications endpoint each registry posts to, authenticated by that registry's secret."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.db import IntegrityError, transaction
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from accounts import tokens
from registries.models import Registry, WebhookEvent
from registries.services import WEBHOOK_PREFIX
from registries.webhooks import PARSERS
from registries.webhooks.events import MalformedEvent, PushEvent

MAX_BODY = 1_000_000  # distribution sends one event per POST; a megabyte is far beyond any real one


@csrf_exempt  # a registry is not a browser: it proves itself with the bearer secret instead
@login_not_required
@require_POST
def receive(request: HttpRequest, registry_id: int) -> JsonResponse:
    registry = get_object_or_404(Registry, pk=registry_id)
    if not _authenticated(request, registry):
        response = JsonResponse({"error": "this registry's notification secret is required"}, status=401)
        response["WWW-Authenticate"] = 'Bearer realm="customs-notifications"'
        return response
    if len(request.body) > MAX_BODY:
        return JsonResponse({"error": "the notification is too large"}, status=413)
    try:
        events = PARSERS[registry.kind](request.body)
    except (MalformedEvent, KeyError) as exc:
        return JsonResponse({"error": f"cannot read this notification: {exc}"}, status=400)
    accepted = [row.pk for event in events if (row := _record(registry, event)) is not None]
    if accepted:
        from registries.tasks import apply_webhook_events

        transaction.on_commit(lambda: apply_webhook_events.delay(accepted))
    return JsonResponse({"accepted": len(accepted), "duplicates": len(events) - len(accepted)})


def _authenticated(request: HttpRequest, registry: Registry) -> bool:
    secret = _presented_secret(request)
    return (
        bool(registry.webhook_secret_digest)
        and tokens.looks_like_token(secret, WEBHOOK_PREFIX)
        and tokens.matches(secret, registry.webhook_secret_digest)
    )


def _presented_secret(request: HttpRequest) -> str:
    """The secret from `Authorization: Bearer`, or from `?token=` for senders that cannot set headers.

    Docker Hub webhooks and plain Pub/Sub push subscriptions only know a URL, so the secret has to
    ride in it; a header, when there is one, is always preferred (URLs end up in proxy logs).
    """
    scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and raw.strip():
        return raw.strip()
    return request.GET.get("token", "").strip()


def _record(registry: Registry, event: PushEvent) -> WebhookEvent | None:
    """Keep the event, or None when this registry already sent it (registries redeliver)."""
    try:
        with transaction.atomic():
            return WebhookEvent.objects.create(
                registry=registry,
                event_id=event.event_id,
                action=event.action,
                repository=event.repository,
                digest=event.digest,
                tag=event.tag,
                occurred_at=event.at,
            )
    except IntegrityError:
        return None
