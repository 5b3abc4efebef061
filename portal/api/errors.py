"""One error shape for every API failure: {"error": {"code", "message", "fields"?}}."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from portal.errors import RequestRejected


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, RequestRejected):
        # Not a field's fault: the request was well formed, but cannot be carried out as asked.
        body = {"code": "rejected", "message": str(exc), "fields": {}}
        return Response({"error": body}, status=status.HTTP_400_BAD_REQUEST)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a bug: let Django log it and answer 500
    response.data = {"error": _body(exc, response)}
    return response


def _body(exc: Exception, response: Response) -> dict[str, Any]:
    if isinstance(exc, exceptions.ValidationError):
        return {"code": "invalid", "message": _first_message(exc.detail), "fields": _fields(exc.detail)}
    if isinstance(exc, Http404):
        return {"code": "not_found", "message": "not found"}
    if isinstance(exc, PermissionDenied):
        return {"code": "permission_denied", "message": "your role does not allow this"}
    if isinstance(exc, exceptions.APIException):
        codes = exc.get_codes()
        return {"code": codes if isinstance(codes, str) else "error", "message": str(exc.detail)}
    return {"code": "error", "message": str(exc)}


def _fields(detail: Any) -> dict[str, list[str]]:
    if not isinstance(detail, dict):
        return {}
    return {
        name: [str(m) for m in (msgs if isinstance(msgs, list) else [msgs])] for name, msgs in detail.items()
    }


def _first_message(detail: Any) -> str:
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    if isinstance(detail, dict) and detail:
        name, messages = next(iter(detail.items()))
        prefix = "" if name == "non_field_errors" else f"{name}: "
        return prefix + _first_message(messages)
    return str(detail)
