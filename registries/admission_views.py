"""The Kubernetes admission endpoint: the API server posts an AdmissionReview v1, Customs answers.

The API server authenticates with a bearer token (CUSTOMS_ADMISSION_TOKEN) that it reads from the
kubeconfig its AdmissionConfiguration names; the README shows both files and the webhook
configuration. The decision itself is registries/policy/admission.py.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping, Sequence

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from portal import audit
from portal.audit import AuditAction, Target
from registries.policy import admission
from registries.policy.admission import AdmissionRequest, Decision, ImageVerdict, Mode, Policy, UnknownImages
from registries.tokenserver.issue import RefusalWindow

MAX_BODY = 8 * 1024 * 1024

# A Deployment whose image is denied has its ReplicaSet retry the Pod for as long as it exists, and
# a DaemonSet asks once per node: one event a minute per object and violation says it all.
DENIALS = RefusalWindow(seconds=60.0)


@csrf_exempt  # the API server is not a browser: it proves itself with the bearer token instead
@login_not_required
@never_cache
@require_POST
def validate(request: HttpRequest) -> JsonResponse:
    expected = settings.ADMISSION_TOKEN
    if not expected:
        # Refuse rather than run open: with failurePolicy Fail this blocks Pods until it is set,
        # which is loud, where an unauthenticated policy endpoint would be quietly forgeable.
        return _error(503, "the admission webhook is not configured: set CUSTOMS_ADMISSION_TOKEN")
    if not _has_token(request, expected):
        response = _error(401, "the admission webhook needs the bearer token the API server is given")
        response["WWW-Authenticate"] = 'Bearer realm="customs-admission"'
        return response
    if request.content_type != "application/json":
        return _error(415, "send the AdmissionReview as application/json")
    # Read from the stream, not request.body: Django caps that at DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB),
    # and an UPDATE carries the object twice (object and oldObject, each up to etcd's 1.5 MiB).
    raw = request.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        return _error(413, "the AdmissionReview is larger than any object Kubernetes stores, twice")
    try:
        body = json.loads(raw)
        admission_request = admission.read_review(body)
    except (ValueError, admission.MalformedReview) as exc:
        # json.JSONDecodeError and MalformedReview are both ValueErrors; say which one it was.
        reason = str(exc) if isinstance(exc, admission.MalformedReview) else "the body is not JSON"
        return _error(400, f"not an AdmissionReview: {reason}")
    decision = admission.decide(admission_request, _inventory_judge, policy())
    if decision.violations and not admission_request.dry_run:
        # A dry run (kubectl apply --dry-run=server) gets the same verdict and leaves no trace,
        # as the webhook's sideEffects: NoneOnDryRun promises.
        _audit(admission_request, decision)
    return JsonResponse(admission.response(admission_request, decision))


def policy() -> Policy:
    """The configured policy; a value outside the choices is a configuration error, never a default."""
    try:
        return Policy(mode=Mode(settings.ADMISSION_MODE), unknown=UnknownImages(settings.ADMISSION_UNKNOWN))
    except ValueError:
        raise ImproperlyConfigured(
            "CUSTOMS_ADMISSION_MODE must be enforce or audit, CUSTOMS_ADMISSION_UNKNOWN allow, warn or deny"
        ) from None


def _inventory_judge(images: Sequence[str]) -> Mapping[str, ImageVerdict]:
    # Loaded only when the object runs images: DELETEs and other kinds cost no query.
    return admission.InventoryJudge.load()(images)


def _has_token(request: HttpRequest, expected: str) -> bool:
    scheme, _, offered = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(offered.strip().encode(), expected.encode())


def _audit(request: AdmissionRequest, decision: Decision) -> None:
    enforced = not decision.allowed
    repeats = DENIALS.first_in_window((request.subject, request.operation, enforced, decision.violations))
    if repeats is None:
        return
    audit.record(
        None,
        AuditAction.ADMISSION_DENIED,
        target=Target(
            type=f"kubernetes.{request.kind.lower()}"[:100],
            id=request.subject.partition(" ")[2][:100],  # namespace/name: the target's own id
            label=request.subject[:255],
        ),
        enforced=enforced,  # False: audit mode, where the request went through
        operation=request.operation,
        kubernetes_user=request.username[:150],
        review_uid=request.uid,
        violations=list(decision.violations),
        repeated_before=repeats,
    )


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


app_name = "admission"
# Included from portal/urls.py as "admission/"; the ValidatingWebhookConfiguration's path.
urlpatterns = [path("v1/validate", validate, name="validate")]
