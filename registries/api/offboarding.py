"""Offboarding over the API: the plan (dry run), starting and confirming or cancelling an offboarding,
following its steps, and the reviewer's CSV report.

Admins start, confirm and cancel. Reviewers read everything here, plans included: a plan names the
person's tokens, memberships and registry credentials, which reviewers already read through
/tokens/, /groups/ and /registry-credentials/, and the report is written for them. Refusals from
registries/offboarding.py (offboarding yourself, a second open offboarding, confirming one that is
not a plan) are RequestRejected: a 400 in the usual error shape, as for every other refusal.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import generics, mixins, renderers, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.access import signed_in_user
from accounts.models import User
from accounts.roles import Role
from registries import offboarding, offboarding_report
from registries.api.serializers import PersonSerializer
from registries.api.views import CsvRenderer
from registries.models import Offboarding, OffboardingStep


def _values(choices: Any) -> str:
    return ", ".join(value for value in choices.values if value)


# Plain strings with their values in the help text, not enums: "state", "trigger" and "action" already
# name other choice sets in the schema, and a second one under the same name makes drf-spectacular guess.
ACTIONS_HELP = f"One of: {', '.join(offboarding.Action)}."
STATES_HELP = f"One of: {_values(Offboarding.State)}."
TRIGGERS_HELP = f"One of: {_values(Offboarding.Trigger)}."


# --- the plan -----------------------------------------------------------------------------------


class PlanQuerySerializer(serializers.Serializer[Any]):
    person = serializers.PrimaryKeyRelatedField(queryset=User.objects.all(), help_text="The person's id.")


class PlanItemSerializer(serializers.Serializer[Any]):
    key = serializers.CharField(help_text='Stable across plans, e.g. "customs/token-12".')
    action = serializers.CharField(help_text=ACTIONS_HELP)
    subject = serializers.CharField()
    why = serializers.CharField()
    automated = serializers.BooleanField(
        help_text="false: the registry gives no way to do it; a person must."
    )
    evidence = serializers.DictField(help_text="What the plan read that led to this item.")


class PlanPlaceSerializer(serializers.Serializer[Any]):
    place = serializers.CharField(help_text='"Customs", or the registry\'s name.')
    items = PlanItemSerializer(many=True)


class PlanSerializer(serializers.Serializer[Any]):
    person = PersonSerializer()
    places = PlanPlaceSerializer(many=True, help_text="Customs first, then registries by name.")
    reassigned = PlanItemSerializer(
        many=True,
        help_text="Credentials they created that automation still uses: kept and handed to reassign_to. "
        "A manual start needs reassign_to when this is not empty.",
    )


def plan_body(plan: offboarding.Plan) -> dict[str, Any]:
    places = [{"place": place, "items": items} for place, items in plan.by_place().items()]
    return {"person": plan.person, "places": places, "reassigned": plan.reassigned}


class OffboardingPlanView(generics.GenericAPIView[Any]):
    """What offboarding this person would do, changing nothing: everything they hold, by place."""

    serializer_class = PlanSerializer
    read_role = Role.REVIEWER
    filter_backends: list[Any] = []
    pagination_class = None

    @extend_schema(
        operation_id="v1_offboarding_plan", parameters=[PlanQuerySerializer], responses=PlanSerializer
    )
    def get(self, request: Request) -> Response:
        query = PlanQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        plan = offboarding.plan_for(query.validated_data["person"])
        return Response(PlanSerializer(plan_body(plan)).data)


# --- offboardings -------------------------------------------------------------------------------


class OffboardingStepSerializer(serializers.ModelSerializer[OffboardingStep]):
    action = serializers.CharField(read_only=True, help_text=ACTIONS_HELP)
    evidence = serializers.DictField(read_only=True)

    class Meta:
        model = OffboardingStep
        fields = [
            "id",
            "position",
            "key",
            "place",
            "action",
            "subject",
            "why",
            "automated",
            "evidence",
            "state",
            "attempts",
            "result",
            "done_at",
            "verification",
            "verification_note",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "state": {"help_text": "manual: left to a person; pending steps run (or retry) in the worker."},
            "verification": {"help_text": 'What re-reading the registry showed; "" when not checked yet.'},
        }


class OffboardingSummarySerializer(serializers.Serializer[Any]):
    steps = serializers.IntegerField()
    by_state = serializers.DictField(child=serializers.IntegerField(), help_text="Step state → count.")
    by_verification = serializers.DictField(
        child=serializers.IntegerField(), help_text='Verification → count ("" is not checked yet).'
    )
    places = serializers.ListField(child=serializers.CharField())
    failed = serializers.IntegerField()
    still_present = serializers.IntegerField(help_text="Steps whose subject verification found still there.")


class OffboardingSerializer(serializers.ModelSerializer[Offboarding]):
    person = PersonSerializer(read_only=True)
    reassign_to = PersonSerializer(read_only=True, allow_null=True)
    started_by = PersonSerializer(
        read_only=True, allow_null=True, help_text="null: the directory started it."
    )
    state = serializers.CharField(read_only=True, help_text=STATES_HELP)
    trigger = serializers.CharField(read_only=True, help_text=TRIGGERS_HELP)

    class Meta:
        model = Offboarding
        fields = [
            "id",
            "person",
            "state",
            "trigger",
            "reason",
            "reassign_to",
            "started_by",
            "created_at",
            "confirmed_at",
            "finished_at",
            "verified_at",
        ]
        read_only_fields = fields


class OffboardingDetailSerializer(OffboardingSerializer):
    steps = OffboardingStepSerializer(many=True, read_only=True)
    summary = serializers.SerializerMethodField()

    class Meta(OffboardingSerializer.Meta):
        fields = [*OffboardingSerializer.Meta.fields, "summary", "steps"]
        read_only_fields = fields

    @extend_schema_field(OffboardingSummarySerializer)
    def get_summary(self, run: Offboarding) -> Any:
        return OffboardingSummarySerializer(offboarding_report.summary(run)).data


class OffboardingStartSerializer(serializers.Serializer[Any]):
    person = serializers.PrimaryKeyRelatedField(queryset=User.objects.all(), help_text="Who left.")
    reason = serializers.CharField(max_length=2000, help_text="Why; kept in the audit trail and the report.")
    reassign_to = serializers.PrimaryKeyRelatedField(
        queryset=User.objects.all(),
        required=False,
        allow_null=True,
        help_text="Who answers for what they created that automation still uses (the plan's reassigned).",
    )
    confirm = serializers.BooleanField(
        default=False, help_text="true: confirm at once; false: leave it planned, to confirm or cancel."
    )


def _detail(run: Offboarding) -> dict[str, Any]:
    return OffboardingDetailSerializer(run).data


class OffboardingViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[Offboarding]
):
    """Offboardings, newest first; each one's detail has its steps and a summary. Reviewers and admins
    read them; admins start, confirm and cancel them. Poll a running one's detail to follow it."""

    read_role = Role.REVIEWER
    write_role = Role.ADMIN
    filterset_fields = ["state", "person", "trigger"]
    ordering_fields = ["created_at", "confirmed_at", "finished_at"]

    def get_queryset(self) -> QuerySet[Offboarding]:
        # A detail's steps are one query of their own (in position order, as the model orders them).
        return Offboarding.objects.select_related("person", "reassign_to", "started_by")

    def get_serializer_class(self) -> type[Any]:
        return OffboardingSerializer if self.action == "list" else OffboardingDetailSerializer

    @extend_schema(request=OffboardingStartSerializer, responses={201: OffboardingDetailSerializer})
    def create(self, request: Request) -> Response:
        """Record the plan as a new offboarding; with confirm, confirm it in the same request."""
        form = OffboardingStartSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data, actor = form.validated_data, signed_in_user(request)
        # Both or neither: a confirmation that fails leaves no plan behind to trip the next attempt.
        with transaction.atomic():
            run = offboarding.start(
                data["person"], actor=actor, reason=data["reason"], reassign_to=data.get("reassign_to")
            )
            if data["confirm"]:
                offboarding.confirm(run, actor=actor)
        return Response(_detail(self.get_queryset().get(pk=run.pk)), status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: OffboardingDetailSerializer})
    @action(detail=True, methods=["post"])
    def confirm(self, request: Request, pk: str) -> Response:
        """Cut the person off from Customs now and queue the registry steps. Only a plan can be confirmed."""
        offboarding.confirm(self.get_object(), actor=signed_in_user(request))
        return Response(_detail(self.get_queryset().get(pk=pk)))

    @extend_schema(request=None, responses={200: OffboardingDetailSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        """Drop a plan that was never confirmed. Only a plan can be cancelled."""
        offboarding.cancel(self.get_object(), actor=signed_in_user(request))
        return Response(_detail(self.get_queryset().get(pk=pk)))


class OffboardingReportView(generics.GenericAPIView[Offboarding]):
    """The reviewer's report of one offboarding as CSV: one row per step, in plan order."""

    read_role = Role.REVIEWER
    renderer_classes = [renderers.JSONRenderer, CsvRenderer]  # errors still come back as JSON by default
    filter_backends: list[Any] = []
    pagination_class = None
    queryset = Offboarding.objects.select_related("person")

    @extend_schema(operation_id="v1_offboardings_report_csv", responses={(200, "text/csv"): OpenApiTypes.STR})
    def get(self, request: Request, pk: int) -> StreamingHttpResponse:
        return offboarding_report.csv_response(self.get_object())
