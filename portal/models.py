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

    # Indexes are few on purpose (Meta): a scan rewrites every open finding of a kind, and each
    # index on a changed column costs a write per row; see Meta for the ones queries need.
    kind = models.CharField(max_length=64)
    severity = models.CharField(max_length=16, choices=Severity.choices)
    # Stable identity across runs: the rule builds it from the kind and the subject it concerns.
    key = models.CharField(max_length=255)
    subject_type = models.CharField(max_length=100, blank=True)
    subject_id = models.CharField(max_length=100, blank=True)
    subject_label = models.CharField(max_length=255, blank=True)
    summary = models.CharField(max_length=500)
    detail = models.JSONField(
        default=dict, blank=True, help_text="Evidence: fields, sources, observed times."
    )
    # The part of the estate the rule looked at ("registry-3", "customs"): filters and partial scans.
    scope = models.CharField(max_length=100, blank=True)
    # Whom the subject belongs to (a credential's owner), resolved or only as the registry names them.
    # No index of its own: the (owner, resolved_at) index in Meta serves lookups by owner too.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
    )
    owner_label = models.CharField(max_length=255, blank=True)
    first_seen = models.DateTimeField(default=timezone.now)
    # Start of the current episode: equals first_seen until the finding resolves and comes back.
    # Notices are sent once per episode (and stage), so they key on it.
    opened_at = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    suppressed_until = models.DateTimeField(null=True, blank=True)
    suppression_justification = models.TextField(blank=True)
    # Indexed although nothing filters on it: deleting a person checks every row that names them.
    suppressed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Who is working on it: reviewers assign findings to people, who see them on their list.
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = FindingQuerySet.as_manager()

    class Meta:
        ordering = ["-last_seen"]
        # A constraint, not unique=True: that would add a second, LIKE-only index on the key.
        constraints = [models.UniqueConstraint(fields=["key"], name="finding_unique_key")]
        indexes = [
            models.Index(fields=["kind", "resolved_at"]),
            models.Index(fields=["owner", "resolved_at"]),
            models.Index(fields=["scope", "kind"]),
            models.Index(fields=["subject_type", "subject_id"]),
        ]

    def __str__(self) -> str:
        return f"{self.kind}: {self.summary}"

    @property
    def state(self) -> str:
        if self.resolved_at:
            return "resolved"
        if self.suppressed_until and self.suppressed_until > timezone.now():
            return "suppressed"
        return "open"


class Notice(models.Model):
    """One message sent (or tried) about findings: the ledger that makes every notice go out once.

    `key` names the condition it is about (a finding's episode, an expiry stage, a digest), so a
    scan that finds the same condition again sends nothing; a failed send keeps its row with the
    error and is retried by the next scan until it goes out.
    """

    class Channel(models.TextChoices):
        EMAIL = "email", "E-mail"
        SLACK = "slack", "Slack"
        TEAMS = "teams", "Microsoft Teams"

    key = models.CharField(max_length=255, unique=True)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    recipient = models.CharField(max_length=255, help_text="An e-mail address or the webhook's name.")
    subject = models.CharField(max_length=255)
    findings = models.ManyToManyField(Finding, related_name="notices", blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True, db_index=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.channel} to {self.recipient}: {self.subject}"
