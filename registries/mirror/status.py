"""Where each base image is in each region: the states the mirror job records, the arrival events, the page.

A state says whether one mirror holds one allowed tag as upstream has it: present, missing, stale
(the upstream tag moved on since the mirror got it) or failed, with the reason. The first time a
mirror is seen holding a tag's current digest, that is an arrival: written once to a ledger
(MirrorArrival), then sent as a signed webhook (MIRROR_EVENT_WEBHOOKS) and a chat message (the
Slack / Teams webhooks of portal.notify), so deployments in that region can start. A destination
that refuses is tried again later, with the notices' back-off, and only it.

Webhook URLs are secrets, as in portal.notify: the ledger and the logs name them by a short hash.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from portal import notify
from portal.http import OutboundSession, outbound_session
from registries.inventory import pull_host
from registries.mirror.copy import DestinationResult
from registries.models import BaseImage, BaseImageMirror, MirrorArrival, MirrorRun, MirrorState

logger = logging.getLogger(__name__)

State = MirrorState.State

EVENT_TYPE = "base_image.arrived"
SIGNATURE_HEADER = "X-Customs-Signature-256"
EVENTS_PER_POST = 100  # arrivals in one webhook body; a first run over a large catalog has many
CHAT_LINES = 20  # arrivals named in one chat message; the rest are counted
REASON_CHARS = 1000  # MirrorState.reason's length
STATE_STYLE = {
    State.PRESENT: "sev-low",
    State.MISSING: "sev-medium",
    State.STALE: "sev-medium",
    State.FAILED: "sev-high",
}


# --- Recording what a run saw ---------------------------------------------------------------------


def observe(
    mirror: BaseImageMirror, tag: str, *, upstream_digest: str, held: str | None, run: MirrorRun | None
) -> MirrorState:
    """Record what the mirror's tag names (`held`, None when it has no such tag) against upstream's digest."""
    if held == upstream_digest:
        return _record(mirror, tag, State.PRESENT, upstream_digest, held, "", run)
    if held is None:
        return _record(mirror, tag, State.MISSING, upstream_digest, "", "not in this mirror yet", run)
    reason = f"upstream moved {tag} to {_short(upstream_digest)}; the mirror still has {_short(held)}"
    return _record(mirror, tag, State.STALE, upstream_digest, held, reason, run)


def record_failure(
    mirror: BaseImageMirror, tag: str, *, upstream_digest: str, reason: str, run: MirrorRun | None
) -> MirrorState:
    """The mirror could not be looked at or written to; what its tag names stays as last seen."""
    return _record(mirror, tag, State.FAILED, upstream_digest, None, reason, run)


def record_copy(
    mirror: BaseImageMirror,
    tag: str,
    *,
    upstream_digest: str,
    result: DestinationResult,
    run: MirrorRun | None,
) -> MirrorState:
    """Record one region's copy: present when its tag now names upstream's digest, else failed with why."""
    if result.error:
        return record_failure(mirror, tag, upstream_digest=upstream_digest, reason=result.error, run=run)
    if result.digest != upstream_digest:
        # copy_image tags exactly the digest it was given; anything else is a bug worth seeing, not hiding.
        reason = f"after the copy the tag names {_short(result.digest)}, not {_short(upstream_digest)}"
        return record_failure(mirror, tag, upstream_digest=upstream_digest, reason=reason, run=run)
    return _record(mirror, tag, State.PRESENT, upstream_digest, result.digest, "", run, copied=True)


def _record(
    mirror: BaseImageMirror,
    tag: str,
    state: str,
    upstream_digest: str,
    mirrored_digest: str | None,
    reason: str,
    run: MirrorRun | None,
    *,
    copied: bool = False,
) -> MirrorState:
    now = timezone.now()
    values: dict[str, Any] = {
        "state": state,
        "upstream_digest": upstream_digest,
        "reason": _one_line(reason)[:REASON_CHARS],
        "checked_at": now,
        "run": run,
    }
    if mirrored_digest is not None:
        values["mirrored_digest"] = mirrored_digest
    if copied:
        values["copied_at"] = now
    with transaction.atomic():
        row, _ = MirrorState.objects.update_or_create(mirror=mirror, tag=tag, defaults=values)
        if state == State.PRESENT:
            # Once per (mirror, tag, digest): a region going down and coming back is no new arrival,
            # an upstream tag moving to new content is.
            MirrorArrival.objects.get_or_create(
                mirror=mirror, tag=tag, digest=upstream_digest, defaults={"arrived_at": now}
            )
    return row


def forget_other_tags(mirrors: Iterable[BaseImageMirror], kept: set[str]) -> int:
    """Drop states of tags a complete upstream listing no longer offers (or the patterns no longer allow)."""
    deleted, _ = MirrorState.objects.filter(mirror__in=list(mirrors)).exclude(tag__in=kept).delete()
    return deleted


def _short(digest: str) -> str:
    return digest[:19] if digest else "nothing"


def _one_line(text: str) -> str:
    return " ".join(text.split())


# --- Telling the regions ------------------------------------------------------------------------


@dataclass(frozen=True)
class Arrival:
    """An arrival as events and messages tell it."""

    pk: int
    base_image: str
    tag: str
    digest: str
    region: str
    registry: str
    repository: str
    pull: str  # host/repository@digest in that region's mirror
    arrived_at: datetime

    def event(self) -> dict[str, Any]:
        return {
            "id": f"customs-mirror-arrival-{self.pk}",
            "type": EVENT_TYPE,
            "base_image": self.base_image,
            "tag": self.tag,
            "digest": self.digest,
            "region": self.region,
            "registry": self.registry,
            "repository": self.repository,
            "pull": self.pull,
            "arrived_at": self.arrived_at.isoformat(),
        }


@dataclass(frozen=True)
class Destination:
    """Somewhere arrivals go: a name that gives nothing away, and how a batch is sent there."""

    name: str
    send: Callable[[Sequence[Arrival], OutboundSession], None]
    batches: Callable[[Sequence[Arrival]], list[list[Arrival]]]


@dataclass
class DeliveryResult:
    sent: int = 0  # arrivals every destination has now taken
    failed: int = 0  # arrivals some destination refused this time (tried again later)
    errors: list[str] = field(default_factory=list)


def deliver_arrivals(now: datetime | None = None) -> DeliveryResult:
    """Send every arrival that is due to each destination that has not taken it yet.

    Call it outside any transaction of the run that recorded the arrivals: an event cannot be unsent.
    """
    now = now or timezone.now()
    destinations = event_destinations()
    result = DeliveryResult()
    session = outbound_session(purpose="mirror events")
    with transaction.atomic():
        # Locked while sent, so two workers never send one arrival twice (PostgreSQL; SQLite runs one writer).
        rows = list(
            MirrorArrival.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(sent_at=None, attempts__lt=notify.MAX_ATTEMPTS)
            .select_related("mirror__base_image", "mirror__registry")
            .order_by("arrived_at", "pk")[:1000]
        )
        due = [row for row in rows if row.arrived_at + notify.retry_delay(row.attempts) <= now]
        errors: dict[int, list[str]] = {row.pk: [] for row in due}
        by_pk = {row.pk: row for row in due}
        for destination in destinations:
            waiting = [_arrival(row) for row in due if destination.name not in row.delivered_to]
            for batch in destination.batches(waiting) if waiting else []:
                _send(destination, batch, session, by_pk, errors)
        for row in due:
            _settle(row, errors[row.pk], now, result)
    return result


def _send(
    destination: Destination,
    batch: list[Arrival],
    session: OutboundSession,
    rows: dict[int, MirrorArrival],
    errors: dict[int, list[str]],
) -> None:
    try:
        destination.send(batch, session)
    except notify.DeliveryFailed as exc:
        logger.warning("mirror events: %s refused %d arrivals: %s", destination.name, len(batch), exc)
        for arrival in batch:
            errors[arrival.pk].append(f"{destination.name}: {exc}")
        return
    for arrival in batch:
        rows[arrival.pk].delivered_to = [*rows[arrival.pk].delivered_to, destination.name]


def _settle(row: MirrorArrival, errors: list[str], now: datetime, result: DeliveryResult) -> None:
    row.attempts += 1
    row.error = "; ".join(errors)[:500]
    if errors:
        result.failed += 1
        result.errors += errors
    else:
        row.sent_at = now
        result.sent += 1
    row.save(update_fields=["delivered_to", "attempts", "error", "sent_at"])


def _arrival(row: MirrorArrival) -> Arrival:
    mirror = row.mirror
    return Arrival(
        pk=row.pk,
        base_image=mirror.base_image.name,
        tag=row.tag,
        digest=row.digest,
        region=mirror.serving_region,
        registry=mirror.registry.name,
        repository=mirror.repository,
        pull=f"{pull_host(mirror.registry.endpoint)}/{mirror.repository}@{row.digest}",
        arrived_at=row.arrived_at,
    )


def event_destinations() -> list[Destination]:
    """The signed webhooks, then the chat webhooks; each named by a hash of its URL."""
    hooks = [
        Destination(notify.webhook_name("event", url), _webhook_sender(url), _in_chunks)
        for url in settings.MIRROR_EVENT_WEBHOOKS
    ]
    chats = [
        Destination(chat.recipient, _chat_sender(chat), _by_region) for chat in notify.chat_destinations()
    ]
    return [*hooks, *chats]


def _in_chunks(arrivals: Sequence[Arrival]) -> list[list[Arrival]]:
    return [list(arrivals[i : i + EVENTS_PER_POST]) for i in range(0, len(arrivals), EVENTS_PER_POST)]


def _by_region(arrivals: Sequence[Arrival]) -> list[list[Arrival]]:
    regions: dict[str, list[Arrival]] = {}
    for arrival in arrivals:
        regions.setdefault(arrival.region, []).append(arrival)
    return [regions[region] for region in sorted(regions)]


def signature(body: bytes, secret: str) -> str:
    """The value of X-Customs-Signature-256: HMAC-SHA256 of the exact body bytes, as GitHub signs."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def event_body(arrivals: Sequence[Arrival], now: datetime) -> bytes:
    """The webhook's JSON: the events, and when they were sent (receivers may refuse old replays)."""
    document = {"sent_at": now.isoformat(), "events": [arrival.event() for arrival in arrivals]}
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _webhook_sender(url: str) -> Callable[[Sequence[Arrival], OutboundSession], None]:
    def send(arrivals: Sequence[Arrival], session: OutboundSession) -> None:
        secret = settings.MIRROR_EVENT_WEBHOOK_SECRET
        if not secret:
            # Unsigned, anyone could forge "arrived" and start deployments: refuse until a key is set.
            raise notify.DeliveryFailed("not sent: CUSTOMS_MIRROR_EVENT_WEBHOOK_SECRET is not set")
        body = event_body(arrivals, timezone.now())
        headers = {
            "Content-Type": "application/json",
            "X-Customs-Event": EVENT_TYPE,
            SIGNATURE_HEADER: signature(body, secret),
        }
        notify.post_webhook(session, url, data=body, headers=headers)

    return send


def _chat_sender(chat: notify.Destination) -> Callable[[Sequence[Arrival], OutboundSession], None]:
    def send(arrivals: Sequence[Arrival], session: OutboundSession) -> None:
        region = arrivals[0].region or "no region"
        tags = f"{len(arrivals)} base image tag{'s' if len(arrivals) != 1 else ''}"
        title = f"Customs: {tags} arrived in region {region}"
        lines = [f"{a.base_image}:{a.tag} → {a.pull}" for a in arrivals[:CHAT_LINES]]
        if len(arrivals) > CHAT_LINES:
            lines.append(f"…and {len(arrivals) - CHAT_LINES} more.")
        notify.send_chat(chat, title, lines, session=session)

    return send


# --- The page: per region, per tag ------------------------------------------------------------------


@dataclass(frozen=True)
class StatusRow:
    tag: str
    state: str
    label: str
    style: str
    upstream_digest: str
    mirrored_digest: str
    reason: str
    checked_at: datetime
    copied_at: datetime | None
    pull: str  # by digest, when present


@dataclass
class MirrorStatus:
    """One mirror (a region's copy) of the entry and its tags' states."""

    region: str
    registry: str
    repository: str
    host: str
    rows: list[StatusRow] = field(default_factory=list)

    @property
    def counts(self) -> list[tuple[str, int, str]]:
        """(label, count, style) of each state present, in State order."""
        found = [(s, sum(row.state == s for row in self.rows)) for s in State]
        return [(s.label, n, STATE_STYLE[s]) for s, n in found if n]


@dataclass
class EntryStatus:
    mirrors: list[MirrorStatus]
    last_run: MirrorRun | None


def entry_status(entry: BaseImage) -> EntryStatus:
    """The entry's mirrors by region with their states: two queries, plus the mirrors' unless prefetched."""
    mirrors = sorted(entry.mirrors.all(), key=lambda m: (m.serving_region, m.registry.name))
    by_mirror = {
        mirror.pk: MirrorStatus(
            mirror.serving_region,
            mirror.registry.name,
            mirror.repository,
            pull_host(mirror.registry.endpoint),
        )
        for mirror in mirrors
    }
    for state in MirrorState.objects.filter(mirror__base_image=entry).order_by("tag"):
        place = by_mirror.get(state.mirror_id)
        if place is not None:
            place.rows.append(_row(state, place))
    last_run = MirrorRun.objects.filter(base_image=entry).order_by("-started_at", "-pk").first()
    return EntryStatus(list(by_mirror.values()), last_run)


def _row(state: MirrorState, place: MirrorStatus) -> StatusRow:
    present = state.state == State.PRESENT
    return StatusRow(
        tag=state.tag,
        state=state.state,
        label=state.get_state_display(),
        style=STATE_STYLE[State(state.state)],
        upstream_digest=state.upstream_digest,
        mirrored_digest=state.mirrored_digest,
        reason=state.reason,
        checked_at=state.checked_at,
        copied_at=state.copied_at,
        pull=f"{place.host}/{place.repository}@{state.mirrored_digest}" if present else "",
    )
