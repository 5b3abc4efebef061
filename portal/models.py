"""Cross-cutting records: the audit trail and findings. Subjects are referred to generically."""

from __future__ import annotations

from typing import Any, NoReturn, Self

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class AuditImmutable(Exception):
    """The audit trail is append-only; this is raised on any attempt to change or remove a row."""


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    def update(self, **kwargs: Any) -> NoReturn:
        raise AuditImmutable("audit events cannot be updated")

    def delete(self) -> NoReturn:
        raise AuditImmutable("audit events cannot be deleted")

    def matching(self, *, actor: str = "", action: str = "", target: str = "") -> Self:
        """Reviewer search: substring on the actor and target, prefix on the action."""
        events = self
        if actor:
            events = events.filter(actor_label__icontains=actor)
        if action:
            events = events.filter(action__startswith=action)
        if target:
            events = events.filter(Q(target_label__icontains=target) | Q(target_id=target))
        return events


class AuditEvent(models.Model):
    """One state change: who did what to which object, when, in which request. Hash-chained."""

    sequence = models.PositiveBigIntegerField(unique=True, editable=False)
    at = models.DateTimeField(default=timezone.now, db_index=True, editable=False)
    # The actor is a snapshot, not a foreign key: deleting a user must neither cascade into the
    # trail nor rewrite it (SET_NULL would be an UPDATE, which the trigger refuses).
    actor_id = models.BigIntegerField(null=True, blank=True, db_index=True, editable=False)
    actor_label = models.CharField(max_length=255, editable=False)
    action = models.CharField(max_length=100, db_index=True, editable=False)
    target_type = models.CharField(max_length=100, blank=True, editable=False)
    target_id = models.CharField(max_length=100, blank=True, db_index=True, editable=False)
    target_label = models.CharField(max_length=255, blank=True, editable=False)
    detail = models.JSONField(default=dict, blank=True, editable=False)
    request_id = models.CharField(max_length=128, blank=True, editable=False)
    prev_hash = models.CharField(max_length=64, editable=False)
    hash = models.CharField(max_length=64, unique=True, editable=False)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-sequence"]
        indexes = [models.Index(fields=["target_type", "target_id"])]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.action} by {self.actor_label}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AuditImmutable("audit events cannot be updated")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AuditImmutable("audit events cannot be deleted")


class AuditChainHead(models.Model):
    """A single row holding the chain's tip; locking it serialises writers so the chain never forks."""

    last_sequence = models.PositiveBigIntegerField(default=0)
    last_hash = models.CharField(max_length=64)

    def __str__(self) -> str:
        return f"audit chain at #{self.last_sequence}"


class FindingQuerySet(models.QuerySet["Finding"]):
    def unresolved(self) -> Self:
        return self.filter(resolved_at=None)

    def suppressed(self, *, now: Any = None) -> Self:
        return self.unresolved().filter(suppressed_until__gt=now or timezone.now())

    def open(self, *, now: Any = None) -> Self:
        """Unresolved and not currently suppressed: what someone should act on."""
        return self.unresolved().exclude(suppressed_until__gt=now or timezone.now())


class Finding(models.Model):
    """Something that needs attention, opened and resolved by rules, keyed so it is never duplicated."""

    class Severity(models.TextChoices):
        INFO = "info", "Info"
        LOW = "low", "Low"
        MEDIUM = "medium", "Medium"
        HIGH = "high", "High"
        CRITICAL = "critical", "Critical"

    kind = models.CharField(max_length=64, db_index=True)
    severity = models.CharField(max_length=16, choices=Severity.choices, db_index=True)
    # Stable identity across runs: the rule builds it from the kind and the subject it concerns.
    key = models.CharField(max_length=255, unique=True)
    subject_type = models.CharField(max_length=100, blank=True)
    subject_id = models.CharField(max_length=100, blank=True)
    subject_label = models.CharField(max_length=255, blank=True)
    summary = models.CharField(max_length=500)
    detail = models.JSONField(
        default=dict, blank=True, help_text="Evidence: fields, sources, observed times."
    )
    first_seen = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now, db_index=True)
    resolved_at = models.DateTimeField(null=True, blank=True, db_index=True)
    suppressed_until = models.DateTimeField(null=True, blank=True)
    suppression_justification = models.TextField(blank=True)
    suppressed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = FindingQuerySet.as_manager()

    class Meta:
        ordering = ["-last_seen"]
        indexes = [models.Index(fields=["kind", "resolved_at"])]

    def __str__(self) -> str:
        return f"{self.kind}: {self.summary}"

    @property
    def state(self) -> str:
        if self.resolved_at:
            return "resolved"
        if self.suppressed_until and self.suppressed_until > timezone.now():
            return "suppressed"
        return "open"
