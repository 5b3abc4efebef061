from __future__ import annotations

import json
from datetime import UTC
from typing import Any

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from portal import findings
from portal.models import AuditEvent, Finding


class AuditEventSerializer(serializers.ModelSerializer[AuditEvent]):
    class Meta:
        model = AuditEvent
        fields = [
            "sequence",
            "at",
            "actor_id",
            "actor_label",
            "action",
            "target_type",
            "target_id",
            "target_label",
            "detail",
            "request_id",
            "prev_hash",
            "hash",
        ]
        read_only_fields = fields


def audit_json_line(event: AuditEvent) -> str:
    """One event as a line of the audit JSONL export (the audit page's and the evidence bundle's)."""
    return json.dumps(AuditEventSerializer(event).data, sort_keys=True) + "\n"


class FindingSerializer(serializers.ModelSerializer[Finding]):
    state = serializers.CharField(read_only=True)
    suppressed_by = serializers.CharField(source="suppressed_by.username", read_only=True, default=None)
    owner = serializers.CharField(
        source="owner.username", read_only=True, default=None, help_text="The linked person's username."
    )
    assignee = serializers.CharField(source="assignee.username", read_only=True, default=None)

    class Meta:
        model = Finding
        fields = [
            "id",
            "key",
            "kind",
            "severity",
            "state",
            "scope",
            "summary",
            "subject_type",
            "subject_id",
            "subject_label",
            "detail",
            "owner",
            "owner_label",
            "assignee",
            "first_seen",
            "opened_at",
            "last_seen",
            "resolved_at",
            "suppressed_until",
            "suppression_justification",
            "suppressed_by",
        ]
        read_only_fields = fields


class SuppressSerializer(serializers.Serializer[Any]):
    until = serializers.DateTimeField()
    justification = serializers.CharField(max_length=2000)


class AssignSerializer(serializers.Serializer[Any]):
    assignee = serializers.CharField(
        allow_null=True, allow_blank=True, help_text="A username; null or empty unassigns."
    )

    def validate_assignee(self, value: str | None) -> Any:
        try:
            return findings.assignee_named(value or "")
        except findings.AssignmentError as exc:
            raise serializers.ValidationError(str(exc)) from exc


class FindingBulkSerializer(serializers.Serializer[Any]):
    """One action on findings chosen by id or by the list's filters; all of them change, or none."""

    action = serializers.ChoiceField(choices=list(findings.BULK_ACTIONS))
    ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        required=False,
        allow_empty=False,
        max_length=findings.BULK_LIMIT,
        help_text="The findings to change. Give this or filters.",
    )
    filters = serializers.DictField(
        child=serializers.CharField(allow_blank=True),
        required=False,
        help_text=(
            "Every finding matching these parameters of GET /api/v1/findings/ (kind, severity, "
            "state, scope, owner, assignee, assigned, subject_type, subject_id, q, open_on, "
            "changed_since); without state, findings in every state."
        ),
    )
    expected_count = serializers.IntegerField(
        required=False,
        min_value=0,
        help_text="How many findings the choice should hold; if it holds another number, nothing changes.",
    )
    until = serializers.DateTimeField(required=False, help_text="suppress: when the suppression ends.")
    justification = serializers.CharField(
        required=False, max_length=2000, help_text="suppress: why the risk is accepted."
    )
    assignee = serializers.CharField(required=False, allow_blank=False, help_text="assign: a username.")

    def validate_assignee(self, value: str) -> Any:
        try:
            return findings.assignee_named(value)
        except findings.AssignmentError as exc:
            raise serializers.ValidationError(str(exc)) from exc

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("ids" in attrs) == ("filters" in attrs):
            raise serializers.ValidationError("give either ids or filters")
        missing = {
            "suppress": ["until", "justification"],
            "assign": ["assignee"],
        }.get(attrs["action"], [])
        errors = {name: f"required to {attrs['action']}" for name in missing if name not in attrs}
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class BulkResultSerializer(serializers.Serializer[Any]):
    action = serializers.CharField()
    chosen = serializers.IntegerField(help_text="Findings the choice held.")
    changed = serializers.IntegerField(help_text="Findings that changed (the rest already were so).")


class UtcDateTimeField(serializers.DateTimeField):
    """ISO-8601 in UTC with a Z, whatever the server's time zone: what log pipelines parse best."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(default_timezone=UTC, read_only=True, **kwargs)


class FindingSubjectSerializer(serializers.Serializer[Any]):
    type = serializers.CharField(source="subject_type")
    id = serializers.CharField(source="subject_id")
    # A field named like Field.label: DRF takes declared fields off the class, which mypy cannot see.
    label = serializers.CharField(source="subject_label")  # type: ignore[assignment]


class FindingOwnerSerializer(serializers.Serializer[Any]):
    username = serializers.CharField(
        source="owner.username", allow_null=True, help_text="The linked person, if any."
    )
    label = serializers.CharField(source="owner_label", help_text="How the registry names it.")  # type: ignore[assignment]


class FindingLineSerializer(serializers.Serializer[Finding]):
    """One line of the JSON-lines export. Field names are stable: SIEM parsers are written against them."""

    id = serializers.IntegerField()
    key = serializers.CharField()
    kind = serializers.CharField()
    title = serializers.SerializerMethodField()
    severity = serializers.CharField()
    state = serializers.CharField()
    scope = serializers.CharField()
    subject = FindingSubjectSerializer(source="*")
    summary = serializers.CharField()
    detail = serializers.JSONField()
    owner = FindingOwnerSerializer(source="*")
    assignee = serializers.CharField(source="assignee.username", allow_null=True)
    first_seen = UtcDateTimeField()
    opened_at = UtcDateTimeField()
    last_seen = UtcDateTimeField()
    resolved_at = UtcDateTimeField(allow_null=True)
    suppressed_until = UtcDateTimeField(allow_null=True)
    suppressed_by = serializers.CharField(source="suppressed_by.username", allow_null=True)
    suppression_justification = serializers.CharField()
    url = serializers.SerializerMethodField(help_text="The finding's page in Customs.")

    @extend_schema_field(OpenApiTypes.STR)
    def get_title(self, finding: Finding) -> str:
        kind = findings.KINDS.get(finding.kind)
        return kind.title if kind else finding.kind

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, finding: Finding) -> str:
        path = reverse("portal:finding_detail", args=[finding.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path


# --- the findings dashboard's numbers (the view is registries.hygiene_views.FindingSummaryView) --------


class SeverityCountsSerializer(serializers.Serializer[Any]):
    critical = serializers.IntegerField()
    high = serializers.IntegerField()
    medium = serializers.IntegerField()
    low = serializers.IntegerField()
    info = serializers.IntegerField()


class KindCountsSerializer(serializers.Serializer[Any]):
    kind = serializers.CharField(help_text="The kind's slug, as the findings list's `kind` filter takes it.")
    title = serializers.CharField()
    total = serializers.IntegerField(help_text="Open findings of this kind.")
    by_severity = SeverityCountsSerializer(
        help_text="Open findings of this kind by severity; zeros included."
    )


class DayCountSerializer(serializers.Serializer[Any]):
    date = serializers.DateField()
    open = serializers.IntegerField(
        help_text="Findings open at the end of the day (server time), as the list's `open_on` counts them."
    )


class AgeCountSerializer(serializers.Serializer[Any]):
    # A field named like Field.label: DRF takes declared fields off the class, which mypy cannot see.
    label = serializers.CharField()  # type: ignore[assignment]
    count = serializers.IntegerField(help_text="Credentials still held, created this long ago.")
    min_days = serializers.IntegerField(
        allow_null=True, help_text="Age from (days, inclusive); null in the bucket of unknown creation dates."
    )
    max_days = serializers.IntegerField(
        allow_null=True, help_text="Age up to (days, exclusive); null when open-ended or unknown."
    )


class OwnerCountSerializer(serializers.Serializer[Any]):
    owner = serializers.CharField(
        help_text="The linked person's username; for an owner no person was linked to, the registry's name."
    )
    open = serializers.IntegerField(help_text="Their open findings.")


class FindingSummarySerializer(serializers.Serializer[Any]):
    """What the findings dashboard charts. Counts by kind and owner are of open findings as the list's
    `state=open` means them (unresolved, not suppressed); the trend counts as its `open_on` does."""

    by_kind = KindCountsSerializer(many=True, help_text="Kinds with open findings, the most first.")
    open_per_day = DayCountSerializer(
        many=True, help_text="Every day of the trend window, oldest first, ending today."
    )
    credential_ages = AgeCountSerializer(
        many=True, help_text="Credentials still held (Customs' own tokens too) by age since creation."
    )
    top_owners = OwnerCountSerializer(many=True, help_text="The owners with most open findings, most first.")
