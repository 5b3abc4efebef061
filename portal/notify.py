"""Notices about findings: digests by e-mail and to Slack / Teams webhooks, and expiry notices to owners.

Every message is written to the ledger (`Notice`) first and sent second. A notice's key names the
condition it tells of (new findings for one recipient; one stage of one credential's expiry), so a
condition goes out once however often scans run. A send that fails keeps its row, with the error,
and a later call tries it again with the same findings, backing off, until it goes out or gives up.

Webhook URLs are secrets: they reach the HTTP session and nothing else. The ledger, the logs and
the audit trail name a webhook by a short hash of its URL.
"""

from __future__ import annotations

import hashlib
import json
import logging
import smtplib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.db.models import Case, Count, Exists, IntegerField, Max, OuterRef, QuerySet, Value, When
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from portal import audit, findings
from portal.audit import AuditAction
from portal.http import (
    DeniedDestination,
    OutboundError,
    OutboundSession,
    TransientError,
    describe_connection_error,
    outbound_session,
)
from portal.locks import transaction_lock
from portal.models import Finding, Notice

logger = logging.getLogger(__name__)

Channel = Notice.Channel

EXPIRES_SOON = "credential_expires_soon"
DIGEST_ITEMS = 50  # findings a digest names one by one; the rest are counted
CHAT_SUMMARY_CHARS = 200
# Attempt n (counting from 0) waits until created_at + 2**n - 1 minutes: the last of 12 tries comes
# about 34 hours after the first, so a day-long outage of a mail server or webhook is bridged.
MAX_ATTEMPTS = 12
# Slack: at most 50 blocks and 3,000 characters a section; messages whose blocks hold much more than
# about 13,000 characters in all are refused (msg_blocks_too_long), so stay well under that.
SLACK_BLOCKS, SLACK_SECTION_CHARS, SLACK_TEXT_BUDGET = 50, 3000, 11_000
TEAMS_BYTES = 27_000  # Teams refuses webhook messages over 28 KB
_SEVERITIES = [severity.value for severity in Finding.Severity]  # least severe first
_SEVERITY_RANK = Case(
    *(When(severity=value, then=Value(rank)) for rank, value in enumerate(_SEVERITIES)),
    default=Value(-1),
    output_field=IntegerField(),
)


@dataclass
class NoticeResult:
    """What one call did. `skipped`: due notices not tried, because their webhook or address is no
    longer configured, owner notices are switched off, or the finding closed before its owner was told
    (that notice is withdrawn)."""

    sent: int = 0
    failed: int = 0
    skipped: int = 0

    def __iadd__(self, other: NoticeResult) -> NoticeResult:
        self.sent += other.sent
        self.failed += other.failed
        self.skipped += other.skipped
        return self


@dataclass(frozen=True)
class Destination:
    """Where digests go: an e-mail address, or a webhook known by a name that gives nothing away."""

    channel: str
    recipient: str
    url: str = field(default="", repr=False)


class DeliveryFailed(Exception):
    """A send that did not go through; the reason is safe to store and show (no secrets)."""


# --- the one entry point ------------------------------------------------------------------------


def send_pending(now: datetime | None = None) -> NoticeResult:
    """Write a notice for every condition nobody has been told of yet, then send every notice due.

    Call it after a scan's transaction has committed, never inside one: a message cannot be unsent
    if the ledger row that records it is rolled back.
    """
    now = now or timezone.now()
    destinations = {(d.channel, d.recipient): d for d in digest_destinations()}
    with transaction.atomic():
        # Two scans finishing together must not both write the same digest.
        transaction_lock("customs.notify")
        for destination in destinations.values():
            _compose_digest(destination, now)
        if settings.NOTIFY_OWNERS_OF_EXPIRING:
            _compose_owner_notices(now)
    result = NoticeResult()
    session = outbound_session(purpose="notifications")
    for notice_id in _due(now):
        result += _deliver(notice_id, destinations, session, now)
    return result


def digest_destinations() -> list[Destination]:
    emails = [Destination(Channel.EMAIL, address) for address in settings.NOTIFY_DIGEST_EMAILS]
    slack = [_webhook(Channel.SLACK, url) for url in settings.NOTIFY_SLACK_WEBHOOKS]
    teams = [_webhook(Channel.TEAMS, url) for url in settings.NOTIFY_TEAMS_WEBHOOKS]
    return [*emails, *slack, *teams]


def webhook_name(channel: str, url: str) -> str:
    """A stable, non-secret name for a webhook: the same across restarts and reorderings of the setting."""
    # The URL is the webhook's only credential; 40 bits of its hash tell webhooks apart and cannot be
    # turned back into a URL that carries a long random token.
    return f"{channel} webhook {hashlib.sha256(url.encode()).hexdigest()[:10]}"


def _webhook(channel: str, url: str) -> Destination:
    return Destination(channel, webhook_name(channel, url), url)


# --- composing: which conditions need a notice -------------------------------------------------


def _compose_digest(destination: Destination, now: datetime) -> None:
    """One notice listing the findings whose current episode this recipient has not been told of."""
    # A notice written since the episode opened covers it, sent or still being retried. A finding
    # that resolved and came back has a later opened_at, so older notices no longer cover it.
    told = Notice.objects.filter(
        channel=destination.channel,
        recipient=destination.recipient,
        findings=OuterRef("pk"),
        created_at__gte=OuterRef("opened_at"),
    )
    news = list(
        Finding.objects.open(now=now)
        .filter(severity__in=_SEVERITIES[_SEVERITIES.index(settings.NOTIFY_MIN_SEVERITY) :])
        .filter(~Exists(told))
        .order_by("pk")
        .values_list("pk", "opened_at", "severity")
    )
    if not news:
        return
    episodes = ",".join(f"{pk}@{_episode(opened)}" for pk, opened, _ in news)
    key = f"digest:{destination.channel}:{_short_hash(destination.recipient)}:{_short_hash(episodes, 20)}"
    severities = Counter(severity for *_, severity in news)
    subject = f"[Customs] {_headline(len(news), _count_by_severity(severities))}"
    notice, created = Notice.objects.get_or_create(
        key=key,
        defaults={
            "channel": destination.channel,
            "recipient": destination.recipient,
            "subject": subject[:255],
            "created_at": now,
        },
    )
    if created:
        notice.findings.add(*(pk for pk, *_ in news))


def _compose_owner_notices(now: datetime) -> None:
    """One e-mail per expiry stage of each credential's current episode, to its owner."""
    expiring = (
        Finding.objects.open(now=now)
        .filter(kind=EXPIRES_SOON, owner__isnull=False, owner__is_active=True)
        .exclude(owner__email="")
        .select_related("owner")
    )
    wanted = {key: finding for finding in expiring if (key := _expiry_key(finding))}
    existing = set(Notice.objects.filter(key__in=wanted).values_list("key", flat=True))
    for key, finding in wanted.items():
        if key in existing or finding.owner is None:
            continue
        notice = Notice.objects.create(
            key=key,
            channel=Channel.EMAIL,
            recipient=finding.owner.email,
            subject=_one_line(f"[Customs] Your credential {_credential_name(finding)} expires soon")[:255],
            created_at=now,
        )
        notice.findings.add(finding)


def _expiry_key(finding: Finding) -> str:
    """The owner notice a finding calls for now; empty when the rule gave no stage."""
    stage = finding.detail.get("stage") if isinstance(finding.detail, dict) else None
    if not isinstance(stage, int) or isinstance(stage, bool):
        return ""
    return f"expiry:{finding.pk}:{_episode(finding.opened_at)}:{stage}"


def _episode(opened_at: datetime) -> int:
    return int(opened_at.timestamp() * 1_000_000)


def _short_hash(text: str, length: int = 12) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


# --- sending -----------------------------------------------------------------------------------


def _due(now: datetime) -> list[int]:
    waiting = (
        Notice.objects.filter(sent_at=None, attempts__lt=MAX_ATTEMPTS)
        .order_by("created_at", "pk")
        .values_list("pk", "created_at", "attempts")
    )
    return [pk for pk, created, attempts in waiting if created + retry_delay(attempts) <= now]


def retry_delay(attempts: int) -> timedelta:
    """How long after its creation a notice that failed `attempts` times may be tried again."""
    return timedelta(minutes=2**attempts - 1)


def _deliver(
    notice_id: int, destinations: dict[tuple[str, str], Destination], session: OutboundSession, now: datetime
) -> NoticeResult:
    # The row stays locked while it is sent, so two workers never send one notice twice.
    with transaction.atomic():
        notice = Notice.objects.select_for_update(skip_locked=True).filter(pk=notice_id, sent_at=None).first()
        if notice is None:
            return NoticeResult()  # sent, or being sent, by another worker meanwhile
        send = _sender(notice, destinations, session, now)
        if send is None:
            return NoticeResult(skipped=1)
        try:
            send()
        except DeliveryFailed as failure:
            _record_failure(notice, str(failure))
            return NoticeResult(failed=1)
        _record_sent(notice, now)
        return NoticeResult(sent=1)


def _sender(
    notice: Notice, destinations: dict[tuple[str, str], Destination], session: OutboundSession, now: datetime
) -> Callable[[], None] | None:
    """What sends this notice now, or None when it is not to be sent (see NoticeResult.skipped)."""
    if notice.key.startswith("expiry:"):
        return _owner_sender(notice, now)
    destination = destinations.get((notice.channel, notice.recipient))
    if destination is None:
        return None  # kept: it goes out if the address or webhook is configured again
    digest = build_digest(Finding.objects.filter(notices=notice), now=now)
    if notice.channel == Channel.EMAIL:
        message = digest_email(digest, to=notice.recipient, subject=notice.subject)
        return lambda: _send_email(message)
    payload = WEBHOOK_PAYLOADS[notice.channel](digest)
    return lambda: _post(session, destination, payload)


def _owner_sender(notice: Notice, now: datetime) -> Callable[[], None] | None:
    if not settings.NOTIFY_OWNERS_OF_EXPIRING:
        return None
    finding = Finding.objects.open(now=now).filter(notices=notice).select_related("owner").first()
    if finding is None or _expiry_key(finding) != notice.key:
        # Rotated, suppressed, reopened or moved on to a later stage before this went out: telling
        # the owner now would be wrong or repeat the later notice. Never sent, so nothing to keep.
        notice.delete()
        return None
    message = expiry_email(finding, to=notice.recipient, subject=notice.subject, now=now)
    return lambda: _send_email(message)


def _record_failure(notice: Notice, reason: str) -> None:
    notice.attempts += 1
    notice.error = reason[:500]
    notice.save(update_fields=["attempts", "error"])
    logger.warning(
        "notify: %s to %s failed (attempt %d of %d): %s",
        notice.channel,
        notice.recipient,
        notice.attempts,
        MAX_ATTEMPTS,
        notice.error,
    )


def _record_sent(notice: Notice, now: datetime) -> None:
    notice.attempts += 1
    notice.sent_at, notice.error = now, ""
    notice.save(update_fields=["attempts", "sent_at", "error"])
    audit.record(
        None,
        AuditAction.NOTICE_SENT,
        target=notice,
        channel=notice.channel,
        recipient=notice.recipient,
        findings=notice.findings.count(),
        attempts=notice.attempts,
    )
    logger.info("notify: %s to %s sent (%s)", notice.channel, notice.recipient, notice.key)


def _send_email(message: EmailMultiAlternatives) -> None:
    try:
        message.send()
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryFailed(f"mail server: {type(exc).__name__}: {_one_line(str(exc))}"[:500]) from None


def _post(session: OutboundSession, destination: Destination, payload: dict[str, Any]) -> None:
    body = post_webhook(session, destination.url, payload=payload)
    # Teams' retired Office 365 connectors answered 200 with the failure in the body.
    if destination.channel == Channel.TEAMS and "delivery failed" in body.lower():
        raise DeliveryFailed(body)


def post_webhook(
    session: OutboundSession,
    url: str,
    *,
    payload: dict[str, Any] | None = None,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> str:
    """POST to a webhook whose URL is a secret: its answer, scrubbed of the URL, or DeliveryFailed
    naming no URL when it is refused or does not answer 2xx."""
    # `from None` throughout: the underlying exceptions carry the URL, which is the secret.
    try:
        response = session.post(url, json=payload, data=data, headers=headers, allow_redirects=False)
    except DeniedDestination:
        raise DeliveryFailed("refused: the webhook's address is in CUSTOMS_OUTBOUND_DENY_NETWORKS") from None
    except TransientError as exc:
        if isinstance(exc.__cause__, requests.RequestException):
            raise DeliveryFailed(describe_connection_error(exc.__cause__)) from None
        raise DeliveryFailed("connection failed") from None
    except (OutboundError, requests.RequestException) as exc:
        raise DeliveryFailed(f"request failed ({type(exc).__name__})") from None
    body = _scrub(response.text[:300], url)
    if not 200 <= response.status_code < 300:
        raise DeliveryFailed(
            f"HTTP {response.status_code}: {body}" if body else f"HTTP {response.status_code}"
        )
    return body


def _scrub(text: str, url: str) -> str:
    """A response body fit to store: one line, with any echo of the webhook's URL removed."""
    parts = urlsplit(url)
    for secret in (url, parts.path, parts.query):
        if len(secret) > 1:
            text = text.replace(secret, "[webhook]")
    return _one_line(text)


def _one_line(text: str) -> str:
    return " ".join(text.split())


# --- what a digest says ------------------------------------------------------------------------


@dataclass(frozen=True)
class DigestItem:
    kind: str
    severity: str
    severity_label: str
    summary: str
    url: str
    note: str = ""  # "resolved since" / "suppressed since" when a retried notice is finally sent


@dataclass(frozen=True)
class DigestGroup:
    title: str
    count: int
    items: tuple[DigestItem, ...]


@dataclass(frozen=True)
class Digest:
    total: int
    by_severity: tuple[tuple[str, int], ...]  # (label, count), most severe first
    kinds: tuple[tuple[str, str, int], ...]  # (slug, title, count), kinds with more severe findings first
    items: tuple[DigestItem, ...]  # the findings named one by one, most severe first
    list_url: str

    @property
    def headline(self) -> str:
        return _headline(self.total, self.by_severity)

    @property
    def groups(self) -> tuple[DigestGroup, ...]:
        return tuple(
            DigestGroup(title, count, tuple(item for item in self.items if item.kind == slug))
            for slug, title, count in self.kinds
        )

    @property
    def more(self) -> int:
        return self.total - len(self.items)

    def shortened(self) -> Digest:
        """The same digest naming its least severe finding no more; it is counted instead."""
        return replace(self, items=self.items[:-1])


def build_digest(chosen: QuerySet[Finding], *, now: datetime, limit: int = DIGEST_ITEMS) -> Digest:
    """Findings grouped by kind, most severe first, naming at most `limit` of them."""
    per_kind = chosen.values("kind").annotate(n=Count("id"), top=Max(_SEVERITY_RANK)).order_by("-top", "kind")
    kinds = tuple((row["kind"], _kind_title(row["kind"]), row["n"]) for row in per_kind)
    severities = dict(chosen.values_list("severity").annotate(n=Count("id")).order_by())
    ranked = chosen.annotate(rank=_SEVERITY_RANK).order_by("-rank", "kind", "opened_at", "pk")[:limit]
    return Digest(
        total=sum(count for *_, count in kinds),
        by_severity=_count_by_severity(severities),
        kinds=kinds,
        items=tuple(_item(finding, now) for finding in ranked),
        list_url=_absolute(reverse("portal:findings")),
    )


def _item(finding: Finding, now: datetime) -> DigestItem:
    note = ""
    if finding.resolved_at is not None:
        note = "resolved since"
    elif finding.suppressed_until is not None and finding.suppressed_until > now:
        note = "suppressed since"
    return DigestItem(
        kind=finding.kind,
        severity=finding.severity,
        severity_label=finding.get_severity_display(),
        summary=finding.summary,
        url=_absolute(reverse("portal:finding_detail", args=[finding.pk])),
        note=note,
    )


def _kind_title(slug: str) -> str:
    kind = findings.KINDS.get(slug)
    return kind.title if kind else slug.replace("_", " ").capitalize()


def _absolute(path: str) -> str:
    return f"{settings.SITE_URL}{path}"


def _count_by_severity(counts: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    """(label, count) for each severity present, most severe first."""
    labels = dict(Finding.Severity.choices)
    return tuple((labels[value], counts[value]) for value in reversed(_SEVERITIES) if counts.get(value))


def _headline(total: int, by_severity: Sequence[tuple[str, int]]) -> str:
    breakdown = ", ".join(f"{count} {label.lower()}" for label, count in by_severity)
    return f"{total} new finding{'s' if total != 1 else ''}: {breakdown}"


def _clip(text: str, length: int) -> str:
    text = _one_line(text)
    return text if len(text) <= length else text[: length - 1] + "…"


def _fit(
    digest: Digest, render: Callable[[Digest], dict[str, Any]], fits: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The rendering that names as many findings as the channel's limits allow."""
    payload = render(digest)
    while not fits(payload) and digest.items:
        digest = digest.shortened()
        payload = render(digest)
    return payload


# --- Slack --------------------------------------------------------------------------------------


def slack_payload(digest: Digest) -> dict[str, Any]:
    """An incoming-webhook message: `text` for notifications and old clients, `blocks` to read."""
    return _fit(digest, _slack, _slack_fits)


def slack_escape(text: str) -> str:
    # Slack reads &, < and > as markup (<!channel> would ping everyone); these three are all it asks.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack(digest: Digest) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(f"Customs: {digest.headline}", 150)}},
        _mrkdwn_section(f"Findings that need attention. <{digest.list_url}|Open the findings list>"),
    ]
    for group in digest.groups:
        lines = [f"*{slack_escape(group.title)}* — {group.count}"]
        lines += [_slack_line(item) for item in group.items]
        blocks += [_mrkdwn_section(chunk) for chunk in _chunks(lines, SLACK_SECTION_CHARS)]
    if digest.more:
        more = f"…and {digest.more} more not listed here: <{digest.list_url}|see them all>."
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": more}]})
    return {"text": slack_escape(f"Customs: {digest.headline}"), "blocks": blocks}


def _slack_line(item: DigestItem) -> str:
    note = f" _({item.note})_" if item.note else ""
    summary = slack_escape(_clip(item.summary, CHAT_SUMMARY_CHARS))
    return f"• *{item.severity_label}* <{item.url}|{summary}>{note}"


def _mrkdwn_section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _chunks(lines: list[str], limit: int) -> list[str]:
    """Lines joined into texts of at most `limit` characters each (every line is far shorter)."""
    chunks: list[str] = []
    for line in lines:
        if chunks and len(chunks[-1]) + 1 + len(line) <= limit:
            chunks[-1] += "\n" + line
        else:
            chunks.append(line[:limit])
    return chunks


def _slack_fits(payload: dict[str, Any]) -> bool:
    blocks = payload["blocks"]
    return len(blocks) <= SLACK_BLOCKS and len(json.dumps(blocks, ensure_ascii=False)) <= SLACK_TEXT_BUDGET


# --- Microsoft Teams ----------------------------------------------------------------------------

ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"


def teams_payload(digest: Digest) -> dict[str, Any]:
    """An incoming-webhook (or Workflows webhook) message carrying one Adaptive Card."""
    return _fit(digest, _teams, lambda payload: len(json.dumps(payload).encode()) <= TEAMS_BYTES)


def teams_escape(text: str) -> str:
    # TextBlocks are read as Markdown: a summary must not become a link, emphasis or code.
    for special in "\\`*_[]~":
        text = text.replace(special, "\\" + special)
    return text


def _teams(digest: Digest) -> dict[str, Any]:
    body: list[dict[str, Any]] = [
        _text_block(f"Customs: {digest.headline}", weight="Bolder", size="Medium"),
        {"type": "FactSet", "facts": [{"title": label, "value": str(n)} for label, n in digest.by_severity]},
    ]
    for group in digest.groups:
        body.append(_text_block(f"**{teams_escape(group.title)}** — {group.count}", separator=True))
        body += [_text_block(_teams_line(item), spacing="None") for item in group.items]
    if digest.more:
        body.append(_text_block(f"…and {digest.more} more not listed here.", isSubtle=True))
    return _teams_message(
        body,
        msteams={"width": "Full"},
        actions=[{"type": "Action.OpenUrl", "title": "Open the findings list", "url": digest.list_url}],
    )


def _teams_message(body: list[dict[str, Any]], **card: Any) -> dict[str, Any]:
    """One Adaptive Card in the envelope Teams incoming and Workflows webhooks take."""
    content = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        **card,
        "body": body,
    }
    return {
        "type": "message",
        "attachments": [{"contentType": ADAPTIVE_CARD, "contentUrl": None, "content": content}],
    }


def _teams_line(item: DigestItem) -> str:
    note = f" _({item.note})_" if item.note else ""
    summary = teams_escape(_clip(item.summary, CHAT_SUMMARY_CHARS))
    return f"**{item.severity_label}** · [{summary}]({item.url}){note}"


def _text_block(text: str, **options: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "wrap": True, **options}


WEBHOOK_PAYLOADS: dict[str, Callable[[Digest], dict[str, Any]]] = {
    Channel.SLACK: slack_payload,
    Channel.TEAMS: teams_payload,
}


# --- e-mail -------------------------------------------------------------------------------------


def digest_email(digest: Digest, *, to: str, subject: str) -> EmailMultiAlternatives:
    context = {"digest": digest, "site_url": settings.SITE_URL}
    return _email(to, subject, "portal/notify/digest", context)


def expiry_email(finding: Finding, *, to: str, subject: str, now: datetime) -> EmailMultiAlternatives:
    expires_at = parse_datetime(str(finding.detail.get("expires_at", "")))
    owner = finding.owner
    context = {
        "finding": finding,
        "name": (owner.get_full_name() or owner.get_username()) if owner else "",
        "credential": _credential_name(finding),
        "expires_at": expires_at,
        "days_left": _days_left(finding.detail, expires_at, now),
        "evidence": _evidence(finding.detail),
        "site_url": settings.SITE_URL,
    }
    return _email(to, subject, "portal/notify/expiry", context)


def send_email_once(key: str, *, to: str, subject: str, template: str, context: dict[str, Any]) -> bool:
    """Send one templated e-mail about a condition outside the findings (an access review's reminder),
    unless the ledger says it went out. True when it was sent now; DeliveryFailed when it was not.

    The ledger row is written in the transaction that sends and kept only once the mail server took
    the message: a failure leaves no row, so the caller's next run tries again, and send_pending()
    never meets a notice it has no sender for.
    """
    with transaction.atomic():
        notice, created = Notice.objects.get_or_create(
            key=key, defaults={"channel": Channel.EMAIL, "recipient": to, "subject": _one_line(subject)[:255]}
        )
        if not created:
            return False
        _send_email(_email(to, subject, template, context))
        _record_sent(notice, timezone.now())
    return True


def _email(to: str, subject: str, template: str, context: dict[str, Any]) -> EmailMultiAlternatives:
    message = EmailMultiAlternatives(
        subject=_one_line(subject),
        body=render_to_string(f"{template}.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[to],
        # RFC 3834: out-of-office replies and the like are not sent back to an automatic message.
        headers={"Auto-Submitted": "auto-generated"},
    )
    message.attach_alternative(render_to_string(f"{template}.html", context), "text/html")
    return message


def _days_left(detail: dict[str, Any], expires_at: datetime | None, now: datetime) -> int:
    """Days left at sending time, counted as the finding's summary counts them (part days round up).

    A retried notice must not repeat the count from the scan that wrote it.
    """
    if expires_at is not None:
        left = expires_at - now
        return max(left.days + (1 if left % timedelta(days=1) else 0), 0)
    days = detail.get("days_left")
    return days if isinstance(days, int) else 0


def _credential_name(finding: Finding) -> str:
    return _clip(finding.subject_label or finding.summary, 120)


def _evidence(detail: Any) -> list[tuple[str, str]]:
    """The rule's evidence as (field, value) lines; nested values are left to the finding's page."""
    if not isinstance(detail, dict):
        return []
    return [
        (str(name).replace("_", " "), str(value))
        for name, value in detail.items()
        if isinstance(value, str | int | float) and not isinstance(value, bool)
    ]


# --- status, for the findings dashboard ---------------------------------------------------------


@dataclass(frozen=True)
class NoticeStatus:
    notice: Notice
    state: str  # "sent", "retrying", "gave up" or "pending"
    findings: int
    next_try: datetime | None  # for "retrying": not before this


def recent_notices(limit: int = 20) -> list[NoticeStatus]:
    """The latest notices with their state and last error: whether notifications are getting through."""
    rows = Notice.objects.annotate(finding_count=Count("findings")).order_by("-created_at", "-pk")[:limit]
    return [NoticeStatus(row, _state(row), row.finding_count, _next_try(row)) for row in rows]


def _state(notice: Notice) -> str:
    if notice.sent_at:
        return "sent"
    if notice.attempts >= MAX_ATTEMPTS:
        return "gave up"
    return "retrying" if notice.attempts else "pending"


def _next_try(notice: Notice) -> datetime | None:
    if notice.sent_at or not notice.attempts or notice.attempts >= MAX_ATTEMPTS:
        return None
    return notice.created_at + retry_delay(notice.attempts)


# --- short news outside the findings (a base image arriving in a region) ------------------------


def chat_destinations() -> list[Destination]:
    """The Slack and Teams webhooks the digest goes to; other short news goes there too."""
    return [destination for destination in digest_destinations() if destination.channel != Channel.EMAIL]


def send_chat(
    destination: Destination, title: str, lines: Sequence[str], *, session: OutboundSession
) -> None:
    """Post a title and plain lines to one Slack or Teams webhook; DeliveryFailed when it is refused.

    The caller keeps its own ledger of what went out. Text is escaped here: pass plain text.
    """
    if destination.channel == Channel.SLACK:
        payload: dict[str, Any] = {"text": slack_escape("\n".join([title, *lines]))}
    else:
        body = [_text_block(teams_escape(title), weight="Bolder")]
        body += [_text_block(teams_escape(line), spacing="None") for line in lines]
        payload = _teams_message(body)
    _post(session, destination, payload)
