"""The notifications endpoint each registry posts to, authenticated by that registry's secret."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import IntegrityError, transaction
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from accounts import tokens
from registries import sync
from registries.connectors.errors import ConfigError
from registries.models import Registry, WebhookEvent
from registries.services import WEBHOOK_PREFIX
from registries.webhooks import ORIGINS, PARSERS, TOKEN_VERIFIERS
from registries.webhooks.events import MalformedEvent, PushEvent, TokenRefused, TokenUncheckable

logger = logging.getLogger(__name__)

MAX_BODY = 1_000_000  # distribution sends one event per POST; a megabyte is far beyond any real one
SECRET_REQUIRED = "this registry's notification secret is required"


@csrf_exempt  # a registry is not a browser: it proves itself with the bearer secret instead
@login_not_required
@require_POST
def receive(request: HttpRequest, registry_id: int) -> JsonResponse:
    registry = get_object_or_404(Registry, pk=registry_id)
    refusal = _refusal(request, registry)
    if refusal is not None:
        return refusal
    if len(request.body) > MAX_BODY:
        return JsonResponse({"error": "the notification is too large"}, status=413)
    try:
        events = PARSERS[registry.kind](request.body)
    except (MalformedEvent, KeyError) as exc:
        return JsonResponse({"error": f"cannot read this notification: {exc}"}, status=400)
    try:
        ours = _ours(registry, events)
    except ConfigError as exc:
        # Not the sender's fault, and fixable: a 503 makes it deliver again later.
        return JsonResponse({"error": f"this registry's settings cannot be read: {exc}"}, status=503)
    accepted = [row.pk for event in ours if (row := _record(registry, event)) is not None]
    if accepted:
        from registries.tasks import apply_webhook_events

        transaction.on_commit(lambda: apply_webhook_events.delay(accepted))
    answer = {"accepted": len(accepted), "duplicates": len(ours) - len(accepted)}
    if len(ours) < len(events):
        answer["not_ours"] = len(events) - len(ours)
    return JsonResponse(answer)


def _refusal(request: HttpRequest, registry: Registry) -> JsonResponse | None:
    """None when the request proves it comes from the registry, else the answer refusing it.

    The registry's secret, from `Authorization: Bearer` or, for senders that cannot set headers, from
    `?token=`; a header, when there is one, is what counts (URLs end up in proxy logs). A kind whose
    sender signs its own bearer token (Pub/Sub push authentication) may send that instead, and then
    the secret may still ride in the URL.
    """
    bearer = _bearer(request)
    verify = TOKEN_VERIFIERS.get(registry.kind)
    if bearer and (verify is None or tokens.looks_like_token(bearer, WEBHOOK_PREFIX)):
        return None if _is_secret(registry, bearer) else _unauthorized(SECRET_REQUIRED)
    if _is_secret(registry, request.GET.get("token", "").strip()):
        return None
    if not bearer or verify is None:
        return _unauthorized(SECRET_REQUIRED)
    try:
        verify(bearer, sync.registry_config(registry), _endpoint_urls(request))
    except ConfigError:
        logger.warning(
            "registry %s: its settings cannot be read; a signed notification was refused", registry.pk
        )
        return _unauthorized(
            "this registry's settings cannot be read, so its sender's token cannot be checked"
        )
    except TokenRefused as exc:
        logger.info("registry %s: notification refused: %s", registry.pk, exc)
        return _unauthorized(f"{exc} (or put this registry's notification secret in the URL as ?token=)")
    except TokenUncheckable as exc:
        logger.warning("registry %s: notification not checked: %s", registry.pk, exc)
        return JsonResponse({"error": f"{exc}; send it again later"}, status=503)
    return None


def _bearer(request: HttpRequest) -> str:
    scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
    return raw.strip() if scheme.lower() == "bearer" else ""


def _is_secret(registry: Registry, presented: str) -> bool:
    return (
        bool(registry.webhook_secret_digest)
        and tokens.looks_like_token(presented, WEBHOOK_PREFIX)
        and tokens.matches(presented, registry.webhook_secret_digest)
    )


def _unauthorized(reason: str) -> JsonResponse:
    response = JsonResponse({"error": reason}, status=401)
    response["WWW-Authenticate"] = 'Bearer realm="customs-notifications"'
    return response


def _endpoint_urls(request: HttpRequest) -> list[str]:
    """This endpoint's URL as the portal publishes it, and as this request reached it (a proxy may
    present another host): what a push subscription's default audience is."""
    return list(
        dict.fromkeys((f"{settings.SITE_URL}{request.path}", request.build_absolute_uri(request.path)))
    )


def _ours(registry: Registry, events: list[PushEvent]) -> list[PushEvent]:
    """The events that happened in this registry's account and region. Another's is logged and left
    out, yet answered with success all the same: refused, the sender would deliver it for days."""
    origin_of = ORIGINS.get(registry.kind)
    if origin_of is None or not events:
        return events
    here = origin_of(sync.registry_config(registry))
    ours = []
    for event in events:
        if event.origin is None or event.origin == here:
            ours.append(event)
        else:
            logger.info(
                "registry %s: event %s happened in %s %s, not in this registry's %s %s; not ours, ignored",
                registry.pk,
                event.event_id,
                event.origin.account,
                event.origin.region or "(unknown region)",
                here.account,
                here.region,
            )
    return ours


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
