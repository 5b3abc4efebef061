from __future__ import annotations

from typing import Any

from rest_framework import serializers

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


class FindingSerializer(serializers.ModelSerializer[Finding]):
    state = serializers.CharField(read_only=True)
    suppressed_by = serializers.CharField(source="suppressed_by.username", read_only=True, default=None)

    class Meta:
        model = Finding
        fields = [
            "id",
            "kind",
            "severity",
            "state",
            "summary",
            "subject_type",
            "subject_id",
            "subject_label",
            "detail",
            "first_seen",
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
