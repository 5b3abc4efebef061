from __future__ import annotations

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.roles import Role
from portal import findings
from portal.api.filters import AuditEventFilter, FindingFilter
from portal.api.serializers import AuditEventSerializer, FindingSerializer, SuppressSerializer
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
    """Findings raised by Customs' rules. Reviewers and admins read and suppress them."""

    serializer_class = FindingSerializer
    read_role = Role.REVIEWER
    write_role = Role.REVIEWER  # suppressing is accepting a risk: the reviewers' call as much as admins'
    filterset_class = FindingFilter
    ordering_fields = ["last_seen", "first_seen", "severity"]

    def get_queryset(self) -> QuerySet[Finding]:
        return Finding.objects.select_related("suppressed_by")

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
