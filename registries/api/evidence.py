"""The evidence bundle by API: the page's zip, for an auditor's or a scheduler's script."""

from __future__ import annotations

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.views import APIView

from accounts.access import signed_in_user
from accounts.roles import Role
from portal.api.views import IgnoreAcceptHeader
from registries import evidence
from registries.evidence_views import bundle_response

PERIOD = [
    OpenApiParameter(
        "start", OpenApiTypes.DATE, required=True, description="First day, YYYY-MM-DD (included)."
    ),
    OpenApiParameter(
        "end",
        OpenApiTypes.DATE,
        required=True,
        description=f"The day after the last, YYYY-MM-DD (not included); {evidence.MAX_DAYS} days at most.",
    ),
]


class EvidenceBundleView(APIView):
    """Evidence for auditors for [start, end): access, findings with their history, offboardings,
    access-review campaigns and decisions, the audit trail and its chain verification, a summary PDF and
    manifest.json with every file's SHA-256. The same period gives the same files but for the summary and
    the manifest's `export` part. Each export is audited. Reviewers and admins."""

    read_role = Role.REVIEWER
    # Clients ask for application/zip or anything else: the zip comes whatever they ask, errors as JSON.
    content_negotiation_class = IgnoreAcceptHeader

    @extend_schema(
        operation_id="v1_evidence_bundle_zip",
        parameters=PERIOD,
        responses={
            (200, "application/zip"): OpenApiResponse(OpenApiTypes.BINARY, description="The bundle."),
            400: OpenApiResponse(description="The period is missing, not a date, reversed or too long."),
        },
    )
    def get(self, request: Request) -> FileResponse:
        period = evidence.period_from(request.query_params.get("start"), request.query_params.get("end"))
        bundle = evidence.export_bundle(period, actor=signed_in_user(request), via="api")
        return bundle_response(bundle, period)
