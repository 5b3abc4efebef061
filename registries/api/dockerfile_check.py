"""The Dockerfile check for CI: `POST /api/v1/base-images/check-dockerfile`.

Dockerfile text and build args in; the same result `manage.py check_dockerfile --format json` prints
out. Input that is not a Dockerfile is a 400 whose message is the check's one readable line. The
call changes nothing, so a read-scoped token (what a CI job should hold) may make it, POST or not.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, parsers, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.roles import Role
from registries.base_image_pages import MAX_CHECK_BYTES, body_too_large
from registries.policy.catalog import Catalog
from registries.policy.dockerfile import DockerfileError, check

# A Dockerfile is a few kilobytes; the body is refused past the page's limit, before it is parsed.
MAX_BODY_BYTES = MAX_CHECK_BYTES
VERDICTS = "approved, deprecated, banned, unapproved, stage, scratch, invalid"


class BodyTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "the request body is over 1 MB; a Dockerfile is rarely over a few kilobytes"
    default_code = "too_large"


class DockerfileSerializer(serializers.Serializer[Any]):
    dockerfile = serializers.CharField(
        max_length=MAX_BODY_BYTES,
        allow_blank=True,  # an empty file is the check's to refuse, in its own words
        trim_whitespace=False,
        help_text="The Dockerfile's text, exactly as in the file.",
    )
    build_args = serializers.DictField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False),
        required=False,
        default=dict,
        help_text="As docker build --build-arg NAME=VALUE; a name no ARG declares is ignored.",
    )


class DockerfileStageSerializer(serializers.Serializer[Any]):
    line = serializers.IntegerField(help_text="Line of the FROM instruction, from 1.")
    image = serializers.CharField(help_text="The image as written, after ARG substitution.")
    reference = serializers.CharField(
        allow_null=True, help_text="Normalised reference; null for scratch, stages and invalid images."
    )
    stage = serializers.CharField(allow_null=True, help_text="This stage's name (AS …), if any.")
    from_stage = serializers.CharField(allow_null=True, help_text="The earlier stage it builds on, if any.")
    verdict = serializers.CharField(help_text=f"One of: {VERDICTS}.")
    message = serializers.CharField()


class DockerfileCheckSerializer(serializers.Serializer[Any]):
    compliant = serializers.BooleanField(
        help_text="false when a stage is unapproved, banned or invalid; deprecated is only a warning."
    )
    final_base = serializers.CharField(
        allow_null=True, help_text="What the last stage descends from; null when that is scratch."
    )
    stages = DockerfileStageSerializer(many=True)


class DockerfileCheckView(APIView):
    """Judge every stage of a Dockerfile against the base-image catalog."""

    read_role = Role.DEVELOPER
    changes_nothing = True  # POSTed for its answer: a read-scoped token may call it
    parser_classes = [parsers.JSONParser]

    @extend_schema(
        operation_id="v1_base_images_check_dockerfile",
        request=DockerfileSerializer,
        responses={200: DockerfileCheckSerializer},
    )
    def post(self, request: Request) -> Response:
        if body_too_large(request):
            raise BodyTooLarge
        payload = DockerfileSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        text, build_args = payload.validated_data["dockerfile"], payload.validated_data["build_args"]
        try:
            result = check(text, build_args, Catalog.load())
        except DockerfileError as exc:  # the text is not a Dockerfile: the field's fault
            raise exceptions.ValidationError({"dockerfile": [str(exc)]}) from exc
        return Response(result.as_dict())
