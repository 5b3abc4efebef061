"""The audit trail: one `record()` for every state change, and the chain check behind verify_audit."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction
from django.utils import timezone

from portal import requestid
from portal.models import AuditChainHead, AuditEvent

logger = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64


class AuditAction(StrEnum):
    """Every action the trail knows. Not database choices: adding one needs no migration."""

    BREAK_GLASS_CREATED = "user.break_glass_created"
    SIGNED_IN = "user.sign_in"
    SIGN_IN_FAILED = "user.sign_in_failed"
    SIGN_IN_THROTTLED = "user.sign_in_throttled"
    USER_CREATED = "user.create"
    USER_UPDATED = "user.update"
    USER_DISABLED = "user.disable"
    USER_DEPARTED = "user.depart"
    USER_REACTIVATED = "user.reactivate"
    USER_DELETED = "user.delete"
    OFFBOARDING_REQUESTED = "user.offboarding_requested"
    OFFBOARDING_PLANNED = "offboarding.plan"
    OFFBOARDING_CONFIRMED = "offboarding.confirm"
    OFFBOARDING_STEP = "offboarding.step"
    OFFBOARDING_FINISHED = "offboarding.finish"
    OFFBOARDING_CANCELLED = "offboarding.cancel"
    OFFBOARDING_VERIFIED = "offboarding.verify"
    GROUPS_SYNCED = "user.groups_sync"
    GROUP_CREATED = "group.create"
    GROUP_UPDATED = "group.update"
    GROUP_DELETED = "group.delete"
    SCIM_TOKEN_CREATED = "scim_token.create"
    SCIM_TOKEN_REVOKED = "scim_token.revoke"
    ACCESS_RULE_CREATED = "access_rule.create"
    ACCESS_RULE_UPDATED = "access_rule.update"
    ACCESS_RULE_DELETED = "access_rule.delete"
    PRINCIPAL_LINK_CREATED = "principal_link.create"
    PRINCIPAL_LINK_DELETED = "principal_link.delete"
    REGISTRY_CREATED = "registry.create"
    REGISTRY_UPDATED = "registry.update"
    REGISTRY_DELETED = "registry.delete"
    REGISTRY_WEBHOOK_SECRET_ROTATED = "registry.webhook_secret_rotate"
    REGISTRY_SYNC_REQUESTED = "registry.sync_request"
    REGISTRY_ACCESS_PLAN_APPLIED = "registry.access_plan_apply"
    REGISTRY_ACCESS_PLAN_FAILED = "registry.access_plan_fail"
    REPLICA_CREATED = "replica.create"
    REPLICA_DELETED = "replica.delete"
    TOKEN_CREATED = "token.create"
    TOKEN_REVOKED = "token.revoke"
    ROBOT_TOKEN_CREATED = "robot_token.create"
    ROBOT_TOKEN_REVOKED = "robot_token.revoke"
    GROUP_OWNER_SET = "group.owner_set"
    BASE_IMAGE_CREATED = "base_image.create"
    BASE_IMAGE_UPDATED = "base_image.update"
    BASE_IMAGE_DELETED = "base_image.delete"
    ADMISSION_DENIED = "admission.deny"
    ACCESS_REVIEW_CREATED = "access_review.create"
    ACCESS_REVIEW_OPENED = "access_review.open"
    ACCESS_REVIEW_DECIDED = "access_review.decide"
    ACCESS_REVIEW_CLOSED = "access_review.close"
    ACCESS_REVIEW_ITEM_APPLIED = "access_review.apply_item"
    ACCESS_REVIEW_APPLIED = "access_review.apply"
    ROLE_BINDING_CREATED = "role_binding.create"
    ROLE_BINDING_DELETED = "role_binding.delete"
    FINDINGS_RECONCILED = "finding.reconcile"
    FINDING_SUPPRESSED = "finding.suppress"
    FINDING_UNSUPPRESSED = "finding.unsuppress"
    NOTICE_SENT = "notice.send"
    FINDING_ASSIGNED = "finding.assign"
    ENCRYPTION_KEY_ROTATED = "encryption.rotate"
    REGISTRY_TOKEN_DENIED = "registry_token.deny"
    TOKEN_SIGNING_KEY_CREATED = "token_signing_key.create"
    TOKEN_SIGNING_KEY_ROTATED = "token_signing_key.rotate"
    TOKEN_SIGNING_KEY_RETIRED = "token_signing_key.retire"
    EVIDENCE_EXPORTED = "evidence.export"


class Actor(Protocol):
    pk: Any

    def get_username(self) -> str: ...


@dataclass(frozen=True)
class Target:
    """Something an event concerns, named without importing the app it lives in."""

    type: str
    id: str
    label: str = ""

    @classmethod
    def of(cls, obj: models.Model) -> Target:
        return cls(type=obj._meta.label_lower, id=str(obj.pk), label=str(obj)[:255])


def record(
    actor: Actor | None, action: AuditAction, *, target: models.Model | Target | None = None, **detail: Any
) -> AuditEvent:
    """Append one event to the chain. Call it inside the transaction that made the change."""
    subject = Target.of(target) if isinstance(target, models.Model) else target
    # Normalise the detail to plain JSON first, so the hash covers exactly what is stored.
    clean_detail = json.loads(json.dumps(detail, cls=DjangoJSONEncoder), parse_float=_as_stored)
    with transaction.atomic():
        head = _head(lock=True)
        event = AuditEvent(
            sequence=head.last_sequence + 1,
            actor_id=actor.pk if actor else None,
            actor_label=actor.get_username() if actor else "system",
            action=str(action),
            target_type=subject.type if subject else "",
            target_id=subject.id if subject else "",
            target_label=subject.label if subject else "",
            detail=clean_detail,
            request_id=requestid.current() if requestid.current() != "-" else "",
            prev_hash=head.last_hash,
        )
        event.hash = event_hash(event)
        event.save()
        head.last_sequence, head.last_hash = event.sequence, event.hash
        head.save(update_fields=["last_sequence", "last_hash"])
    return event


def record_soon(
    actor: Actor | None, action: AuditAction, *, target: models.Model | Target | None = None, **detail: Any
) -> None:
    """Append an event from a worker, off the request path; synchronously if no broker takes it.

    For events that arrive at request rate from outside, such as refused registry logins: each
    synchronous append waits for the chain head's lock and a commit, so a flood of bad logins would
    otherwise slow every request that audits, and every request that waits on those. The event
    keeps the time it happened; the chain order is the order the worker appends them.
    """
    from portal import tasks  # the tasks module imports this one

    subject = Target.of(target) if isinstance(target, models.Model) else target
    detail = {**detail, "occurred_at": timezone.now().isoformat()}
    arguments = (
        actor.pk if actor else None,
        str(action),
        dataclasses.asdict(subject) if subject else None,
        json.loads(json.dumps(detail, cls=DjangoJSONEncoder)),
    )
    try:
        tasks.append_audit_event.apply_async(arguments, retry=False)
    except Exception:  # noqa: BLE001  (any broker failure: the event must not be lost)
        logger.warning("audit: the broker did not take %s; recording it in the request", action)
        record(actor, action, target=subject, **detail)


def _as_stored(text: str) -> float | int:
    """A JSON float as PostgreSQL's jsonb gives it back, so the hash covers what verify_chain reads."""
    # jsonb keeps numbers as decimals and prints them without an exponent: 1e+16 reads back as the
    # integer 10000000000000000 (the decimal, not the binary float's value), and -0.0 as 0.0.
    if "e+" in text.lower():
        return int(Decimal(text))
    return float(text) or 0.0


def _head(*, lock: bool) -> AuditChainHead:
    heads = AuditChainHead.objects.select_for_update() if lock else AuditChainHead.objects.all()
    head = heads.filter(pk=1).first()
    if head is None:
        # Seeded by a migration; recreated from the trail's tip only if a database flush removed it.
        tip = AuditEvent.objects.order_by("-sequence").first()
        head, _ = AuditChainHead.objects.get_or_create(
            pk=1,
            defaults={
                "last_sequence": tip.sequence if tip else 0,
                "last_hash": tip.hash if tip else GENESIS_HASH,
            },
        )
    return head


def event_hash(event: AuditEvent) -> str:
    """SHA-256 over a canonical JSON form of every field but the hash itself."""
    body = {
        "sequence": event.sequence,
        "at": event.at.isoformat(),
        "actor_id": event.actor_id,
        "actor_label": event.actor_label,
        "action": event.action,
        "target": [event.target_type, event.target_id, event.target_label],
        "detail": event.detail,
        "request_id": event.request_id,
        "prev_hash": event.prev_hash,
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class ChainBreak:
    sequence: int
    reason: str


def verify_chain() -> tuple[int, ChainBreak | None]:
    """Walk the trail in order; return how many events were checked and the first break."""
    # The highest sequence first, then the head: record() moves both in one transaction, so any
    # genuine event seen by the first read is covered by the head the second read returns. An event
    # beyond that head was written around record(). Events appended during the walk wait for next run.
    newest = AuditEvent.objects.order_by("-sequence").values_list("sequence", flat=True).first() or 0
    head = _head(lock=False)
    if newest > head.last_sequence:
        return 0, ChainBreak(
            head.last_sequence + 1, "an event exists beyond the chain head (written around record())"
        )
    checked, expected_prev = 0, GENESIS_HASH
    for event in _up_to(head.last_sequence):
        problem = _problem(event, expected_prev, checked + 1)
        if problem:
            return checked, ChainBreak(checked + 1, problem)
        checked, expected_prev = checked + 1, event.hash
    if checked != head.last_sequence:
        # Events removed from the end leave a chain that verifies but is shorter than the head says.
        return checked, ChainBreak(
            checked + 1, f"missing: the chain head records {head.last_sequence} events"
        )
    if expected_prev != head.last_hash:
        return checked, ChainBreak(
            checked, "the last event's hash differs from the one the chain head recorded"
        )
    return checked, None


def _up_to(sequence: int) -> Iterator[AuditEvent]:
    return AuditEvent.objects.filter(sequence__lte=sequence).order_by("sequence").iterator(chunk_size=2000)


def _problem(event: AuditEvent, expected_prev: str, expected_sequence: int) -> str:
    if event.sequence != expected_sequence:
        return f"missing: the next event found is #{event.sequence}"
    if event.prev_hash != expected_prev:
        return "its previous-hash does not match the event before it"
    if event_hash(event) != event.hash:
        return "its content does not match its hash"
    return ""
