from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, viewsets
from rest_framework.decorators import action
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.roles import Role
from portal import findings
from portal.api.filters import AuditEventFilter, FindingFilter, chosen_findings
from portal.api.serializers import (
    AssignSerializer,
    AuditEventSerializer,
    BulkResultSerializer,
    FindingBulkSerializer,
    FindingLineSerializer,
    FindingSerializer,
    SuppressSerializer,
)
from portal.models import AuditEvent, Finding


class AuditEventViewSet(viewsets.ReadOnlyModelViewSet[AuditEvent]):
    """The append-only audit trail, newest first. Reviewers and admins read it."""

    queryset = AuditEvent.objects.all()
    serializer_class = AuditEventSerializer
    read_role = Role.REVIEWER
    filterset_class = AuditEventFilter
    ordering_fields = ["sequence", "at"]
    lookup_field = "sequence"


class FindingViewSet(viewsets.ReadOnlyModelViewSet[Finding]):
    """Findings raised by Customs' rules. Reviewers and admins read, suppress and assign them."""

    serializer_class = FindingSerializer
    read_role = Role.REVIEWER
    write_role = Role.REVIEWER  # suppressing is accepting a risk: the reviewers' call as much as admins'
    filterset_class = FindingFilter
    ordering_fields = ["last_seen", "first_seen", "opened_at", "severity"]
    # Ids only: findings/summary/ (registries/api/urls.py, included after this) must not read as an id.
    lookup_value_regex = "[0-9]+"

    def get_queryset(self) -> QuerySet[Finding]:
        return Finding.objects.select_related("suppressed_by", "owner", "assignee")

    @extend_schema(request=SuppressSerializer, responses={200: FindingSerializer})
    @action(detail=True, methods=["post"])
    def suppress(self, request: Request, pk: str) -> Response:
        finding = get_object_or_404(self.get_queryset(), pk=pk)
        form = SuppressSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        findings.suppress(finding, actor=request.user, **form.validated_data)
        return Response(FindingSerializer(finding).data)

    @extend_schema(request=None, responses={200: FindingSerializer})
    @action(detail=True, methods=["post"])
    def unsuppress(self, request: Request, pk: str) -> Response:
        finding = get_object_or_404(self.get_queryset(), pk=pk)
        findings.unsuppress(finding, actor=request.user)
        return Response(FindingSerializer(finding).data)

    @extend_schema(request=AssignSerializer, responses={200: FindingSerializer})
    @action(detail=True, methods=["post"])
    def assign(self, request: Request, pk: str) -> Response:
        finding = get_object_or_404(self.get_queryset(), pk=pk)
        form = AssignSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        findings.assign(finding, request.user, form.validated_data["assignee"])
        return Response(FindingSerializer(finding).data)

    @extend_schema(request=FindingBulkSerializer, responses={200: BulkResultSerializer})
    @action(detail=False, methods=["post"])
    def bulk(self, request: Request) -> Response:
        """Suppress, unsuppress, assign or unassign many findings at once: all of them, or none."""
        form = FindingBulkSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        ids = data.get("ids")
        result = findings.bulk_change(
            data["action"],
            chosen_findings(ids=ids, filters=data.get("filters")),
            actor=request.user,
            expected=len(set(ids)) if ids else data.get("expected_count"),
            until=data.get("until"),
            justification=data.get("justification", ""),
            assignee=data.get("assignee"),
        )
        return Response({"action": data["action"], "chosen": result.chosen, "changed": result.changed})


class IgnoreAcceptHeader(BaseContentNegotiation):
    """Log collectors send Accept headers of their own (application/x-ndjson, text/plain): the export
    streams JSON lines whatever they ask for, and its errors come back as JSON."""

    def select_parser(self, request: Request, parsers: Any) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(self, request: Request, renderers: Any, format_suffix: str | None = None) -> Any:
        return renderers[0], renderers[0].media_type


class FindingExportView(generics.GenericAPIView[Finding]):
    """Findings as JSON lines for a SIEM: one finding per line, oldest first, the list's filters."""

    read_role = Role.REVIEWER
    serializer_class = FindingLineSerializer
    filterset_class = FindingFilter
    filter_backends = [DjangoFilterBackend]
    content_negotiation_class = IgnoreAcceptHeader
    pagination_class = None

    def get_queryset(self) -> QuerySet[Finding]:
        return Finding.objects.select_related("suppressed_by", "owner", "assignee")

    @extend_schema(
        operation_id="v1_findings_export_jsonl",
        filters=True,
        responses={
            (200, "application/x-ndjson"): OpenApiResponse(
                FindingLineSerializer,
                description="One FindingLine object per line (JSON lines), streamed; no pagination.",
            )
        },
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        # iterator(): rows are read from the database a chunk at a time as the response is sent,
        # so an export of every finding never sits in memory.
        rows = self.filter_queryset(self.get_queryset()).order_by("pk").iterator(chunk_size=1000)
        response = StreamingHttpResponse(_finding_lines(rows, request), content_type="application/x-ndjson")
        stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
        response["Content-Disposition"] = f'attachment; filename="customs-findings-{stamp}.jsonl"'
        return response


def _finding_lines(rows: Iterator[Finding], request: Request) -> Iterator[str]:
    context = {"request": request}
    for finding in rows:
        yield json.dumps(FindingLineSerializer(finding, context=context).data, cls=DjangoJSONEncoder) + "\n"
