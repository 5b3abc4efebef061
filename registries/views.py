"""Registry pages: the registry list and settings, sync history, and the inventory browser.

Everyone signed in reads the inventory (developers look up what to pull); admins connect and
change registries. Writes go through registries/services.py, objects through registries/access.py.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.access import signed_in_user
from accounts.models import DirectoryGroup
from accounts.permissions import role_required
from accounts.roles import Role
from portal.errors import RequestRejected
from portal.querystring import query_without
from registries import access, connectors, credential_views, drift, services
from registries.connectors.base import PermissionCheck
from registries.forms import RegistryForm, ReplicaForm, RepositoryFilter
from registries.inventory import platforms_of, pull_reference, region_states
from registries.models import (
    Artifact,
    Grant,
    PrincipalLink,
    Registry,
    ReplicationLink,
    Repository,
    SyncRun,
    Tag,
    WebhookEvent,
)
from registries.tokenserver import keys

# 50 rows a page everywhere. The repository browser pages with LIMIT/OFFSET: a deep page costs
# PostgreSQL the skipped rows, which at 50 a page stays cheap far past anyone's patience for
# clicking "Next"; people narrow with search and filters instead.
PAGE_SIZE = 50
RECENT_RUNS = 20
RECENT_EVENTS = 20
POLL_SECONDS = 2


def notifications_path(registry: Registry) -> str:
    """Where this registry posts its notifications (the webhook receiver's URL, by name if wired)."""
    for name in ("registries:webhook", "webhooks:registry"):
        try:
            return reverse(name, kwargs={"registry_id": registry.pk})
        except NoReverseMatch:
            continue
    return f"/hooks/registries/{registry.pk}/"


# --- The registry list ---------------------------------------------------------------------------


def _listed_registries(request: HttpRequest) -> QuerySet[Registry]:
    latest_run = SyncRun.objects.filter(registry=OuterRef("pk"), replica=None).order_by("-started_at")
    # A correlated count per registry reads the (registry, name) unique index: no join and GROUP BY
    # over every repository of every registry.
    repositories = (
        Repository.objects.filter(registry=OuterRef("pk"))
        .order_by()
        .values("registry")
        .annotate(n=Count("pk"))
    )
    return (
        Registry.objects.visible_to(signed_in_user(request))
        .annotate(
            last_run_id=Subquery(latest_run.values("pk")[:1]),
            repository_count=Coalesce(Subquery(repositories.values("n")), 0),
        )
        .prefetch_related("replicas")
    )


@require_GET
def registry_list(request: HttpRequest) -> HttpResponse:
    page = Paginator(_listed_registries(request), PAGE_SIZE).get_page(request.GET.get("page"))
    runs = SyncRun.objects.in_bulk([r.last_run_id for r in page if r.last_run_id])  # type: ignore[attr-defined]
    rows = [(registry, runs.get(registry.last_run_id)) for registry in page]  # type: ignore[attr-defined]
    return render(
        request,
        "registries/list.html",
        {"page": page, "rows": rows, "can_add": signed_in_user(request).has_role(Role.ADMIN)},
    )


# --- Adding and editing --------------------------------------------------------------------------


def _chosen_kind(request: HttpRequest) -> str | None:
    kind = request.POST.get("kind") or request.GET.get("kind")
    if kind in connectors.CONNECTORS:
        return kind
    only = list(connectors.CONNECTORS)
    return only[0] if len(only) == 1 and not kind else None


@require_http_methods(["GET", "POST"])
@role_required(Role.ADMIN)
def registry_add(request: HttpRequest) -> HttpResponse:
    kind = _chosen_kind(request)
    if kind is None:
        return render(request, "registries/kind_choice.html", {"kinds": connectors.kind_choices()})
    form = RegistryForm(request.POST or None, kind=kind)
    if request.method == "POST" and form.is_valid():
        registry = _save(request, form, Registry())
        if registry is not None:
            messages.success(request, f"Registry {registry.name} added. Test it, then sync it.")
            return redirect("registries:detail", registry_id=registry.pk)
    return render(
        request,
        "registries/form.html",
        {"form": form, "kind": kind, "registry": None, "needs": _needs(kind)},
    )


@require_http_methods(["GET", "POST"])
def registry_edit(request: HttpRequest, registry_id: int) -> HttpResponse:
    registry = access.get_registry_for_user(signed_in_user(request), registry_id, write=True)
    form = RegistryForm(request.POST or None, kind=registry.kind, registry=registry)
    if request.method == "POST" and form.is_valid() and _save(request, form, registry) is not None:
        messages.success(request, f"Registry {registry.name} saved.")
        return redirect("registries:detail", registry_id=registry.pk)
    return render(
        request,
        "registries/form.html",
        {"form": form, "kind": registry.kind, "registry": registry, "needs": _needs(registry.kind)},
    )


def _needs(kind: str) -> tuple[str, ...]:
    """What the kind's account needs, least privilege, for the form to say before anyone saves."""
    return tuple(getattr(connectors.CONNECTORS.get(kind), "needs", ()))


def _save(request: HttpRequest, form: RegistryForm, registry: Registry) -> Registry | None:
    """Save through the service; its refusal (the config class's words) becomes a form error."""
    try:
        return services.save_registry(
            form.apply_to(registry),
            actor=signed_in_user(request),
            public=form.public(),
            secrets=form.secrets(),
        )
    except RequestRejected as exc:
        form.add_error(None, str(exc))
        return None


@require_POST
def registry_delete(request: HttpRequest, registry_id: int) -> HttpResponse:
    registry = access.get_registry_for_user(signed_in_user(request), registry_id, write=True)
    services.delete_registry(registry, actor=signed_in_user(request))
    messages.success(request, f"Registry {registry.name} and its inventory removed.")
    return redirect("registries:list")


# --- Connection tests ----------------------------------------------------------------------------


def _check_fragment(
    request: HttpRequest, ok: bool, reason: str, steps: tuple[PermissionCheck, ...] = ()
) -> HttpResponse:
    return render(request, "registries/_check.html", {"ok": ok, "reason": reason, "steps": steps})


def _check_form(request: HttpRequest, form: RegistryForm) -> HttpResponse:
    if problems := form.connection_errors():
        return _check_fragment(request, False, "Fix the form first. " + " ".join(problems))
    result = services.check_connection(form.transient())
    return _check_fragment(request, result.ok, result.reason, result.steps)


@require_POST
@role_required(Role.ADMIN)
def registry_check_new(request: HttpRequest) -> HttpResponse:
    """Test the settings typed into the add form, before anything is saved."""
    kind = _chosen_kind(request)
    if kind is None:
        return _check_fragment(request, False, "Choose a registry kind first.")
    return _check_form(request, RegistryForm(request.POST, kind=kind))


@require_POST
def registry_check(request: HttpRequest, registry_id: int) -> HttpResponse:
    """Test a registry: as stored, or (from the edit form) with the unsaved changes applied."""
    registry = access.get_registry_for_user(signed_in_user(request), registry_id, write=True)
    if "endpoint" in request.POST:
        return _check_form(request, RegistryForm(request.POST, kind=registry.kind, registry=registry))
    result = services.check_connection(registry)
    return _check_fragment(request, result.ok, result.reason, result.steps)


# --- Sync, notifications, replicas ---------------------------------------------------------------


@require_POST
def registry_sync(request: HttpRequest, registry_id: int) -> HttpResponse:
    registry = access.get_registry_for_user(signed_in_user(request), registry_id, write=True)
    services.request_sync(registry, actor=signed_in_user(request))
    messages.success(request, "Sync queued; its progress shows below.")
    return redirect("registries:detail", registry_id=registry.pk)


@require_POST
def registry_rotate_webhook_secret(request: HttpRequest, registry_id: int) -> HttpResponse:
    registry = access.get_registry_for_user(signed_in_user(request), registry_id, write=True)
    secret = services.rotate_webhook_secret(registry, actor=signed_in_user(request))
    url = request.build_absolute_uri(notifications_path(registry))
    # Rendered, not redirected: the secret must never land in a session, URL or cache.
    response = render(
        request, "registries/webhook_secret.html", {"registry": registry, "secret": secret, "url": url}
    )
    response["Cache-Control"] = "no-store"
    return response


@require_POST
def replica_add(request: HttpRequest, registry_id: int) -> HttpResponse:
    registry = access.get_registry_for_user(signed_in_user(request), registry_id, write=True)
    form = ReplicaForm(request.POST)
    if not form.is_valid():
        messages.error(request, "A replica needs a region and an endpoint.")
        return redirect("registries:detail", registry_id=registry.pk)
    try:
        replica = services.save_replica(registry, actor=signed_in_user(request), **form.cleaned_data)
    except RequestRejected as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Replica in {replica.region} added; the next sync checks what it holds.")
    return redirect("registries:detail", registry_id=registry.pk)


@require_POST
def replica_delete(request: HttpRequest, registry_id: int, replica_id: int) -> HttpResponse:
    replica = access.get_replica_for_user(signed_in_user(request), registry_id, replica_id, write=True)
    services.delete_replica(replica, actor=signed_in_user(request))
    messages.success(request, f"Replica in {replica.region} removed.")
    return redirect("registries:detail", registry_id=registry_id)


# --- The registry page and its live sync history -------------------------------------------------


def duration(run: SyncRun, now: datetime) -> str:
    """ "3 min 4 s": how long a run took, or has been running."""
    seconds = int(((run.finished_at or now) - run.started_at).total_seconds())
    minutes, seconds = divmod(max(seconds, 0), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def _runs_context(registry: Registry) -> dict[str, Any]:
    runs = list(SyncRun.objects.filter(registry=registry).select_related("replica")[:RECENT_RUNS])
    now = timezone.now()
    return {
        "registry": registry,
        "runs": [(run, duration(run, now)) for run in runs],
        "running": any(run.status == SyncRun.Status.RUNNING for run in runs),
        "poll_seconds": POLL_SECONDS,
    }


@require_GET
def registry_detail(request: HttpRequest, registry_id: int) -> HttpResponse:
    user = signed_in_user(request)
    registry = access.get_registry_for_user(user, registry_id)
    can_change = access.can_change_registry(user, registry)
    context = (
        _runs_context(registry)
        | {
            "config": registry.config,  # the public part only: secrets live in their own encrypted column
            "replicas": registry.replicas.all(),
            "replication": list(ReplicationLink.objects.filter(registry=registry)),
            "events": WebhookEvent.objects.filter(registry=registry)[:RECENT_EVENTS],
            "repository_count": Repository.objects.filter(registry=registry).count(),
            "can_change": can_change,
            "can_review": user.has_role(Role.REVIEWER),
            "replica_form": ReplicaForm() if can_change else None,
            "notifications_url": request.build_absolute_uri(notifications_path(registry)),
            "token_realm": request.build_absolute_uri(reverse("tokenserver:token")),
            "token_issuer": settings.REGISTRY_TOKEN_ISSUER,
        }
        | credential_views.registry_sections(user, registry)  # held_credentials, reported_grants, empty
    )
    return render(request, "registries/detail.html", context)


@require_GET
def token_bundle(request: HttpRequest) -> HttpResponse:
    """The certificates registries behind Customs' token server must trust (auth.token.rootcertbundle)."""
    response = HttpResponse(keys.bundle(), content_type="application/x-pem-file")
    response["Content-Disposition"] = 'attachment; filename="customs-registry-tokens.pem"'
    return response


@require_GET
def registry_runs(request: HttpRequest, registry_id: int) -> HttpResponse:
    """The sync history fragment; htmx polls it while a run is running and stops once none is."""
    registry = access.get_registry_for_user(signed_in_user(request), registry_id)
    return render(request, "registries/_runs.html", _runs_context(registry))


# --- The repository browser ----------------------------------------------------------------------


@require_GET
def repository_list(request: HttpRequest) -> HttpResponse:
    user = signed_in_user(request)
    repositories = Repository.objects.visible_to(user).select_related("registry").sorted_by("name")
    filters = RepositoryFilter(request.GET or None, queryset=repositories, request=request)
    page = Paginator(filters.qs, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"filters": filters, "page": page, "query": query_without(request, "page")}
    # htmx asks for the results alone while someone types in the search box.
    template = (
        "registries/_repositories.html" if getattr(request, "htmx", False) else "registries/repositories.html"
    )
    return render(request, template, context)


# --- Repository and artifact pages ---------------------------------------------------------------


@require_GET
def repository_detail(request: HttpRequest, repository_id: int) -> HttpResponse:
    repository = access.get_repository_for_user(signed_in_user(request), repository_id)
    replicas = list(repository.registry.replicas.all())
    tags = (
        Tag.objects.filter(repository=repository)
        .select_related("artifact")
        .prefetch_related("artifact__platforms")
    )
    tag_page = Paginator(tags, PAGE_SIZE).get_page(request.GET.get("page"))
    artifacts = (
        Artifact.objects.filter(repository=repository)
        .top_level()
        .order_by("-pushed_at", "-first_seen", "-pk")
        .prefetch_related("platforms", "presences", "tags")
    )
    artifact_page = Paginator(artifacts, PAGE_SIZE).get_page(request.GET.get("apage"))
    artifact_rows = [
        (
            a,
            platforms_of(a),
            region_states(repository.registry, replicas, {p.replica_id for p in a.presences.all()}),
        )
        for a in artifact_page
    ]
    context = {
        "repository": repository,
        "page": tag_page,
        "tag_rows": [(tag, platforms_of(tag.artifact)) for tag in tag_page],
        "query": query_without(request, "page"),
        "artifact_page": artifact_page,
        "artifact_rows": artifact_rows,
        "artifact_query": query_without(request, "apage"),
        "replicas": replicas,
    }
    return render(request, "registries/repository.html", context)


@require_GET
def artifact_detail(request: HttpRequest, repository_id: int, digest: str) -> HttpResponse:
    artifact = access.get_artifact_for_user(signed_in_user(request), repository_id, digest)
    repository = artifact.repository
    replicas = list(repository.registry.replicas.all())
    held = set(artifact.presences.values_list("replica_id", flat=True))
    # A platform manifest has no tags of its own: people pull it through its index's tags.
    tagged = artifact.index or artifact
    context = {
        "artifact": artifact,
        "repository": repository,
        "tags": tagged.tags.all(),
        "tags_via_index": artifact.index is not None,
        "platforms": artifact.platforms.all(),
        "regions": region_states(repository.registry, replicas, held),
        "pull_reference": pull_reference(artifact),
    }
    return render(request, "registries/artifact.html", context)


# --- Access drift and the reconcile plan ---------------------------------------------------------

PLAN_ROWS = 200  # changes listed on the page; the counts cover all of them, and apply applies all


@require_GET
@role_required(Role.REVIEWER)
def registry_reconcile(request: HttpRequest, registry_id: int) -> HttpResponse:
    """The registry's drift and reconcile plan, as a dry run: nothing changes until an admin applies it."""
    user = signed_in_user(request)
    registry = access.get_registry_for_user(user, registry_id)
    result = drift.compute(registry)
    context = {
        "registry": registry,
        "drift": result,
        "additions": result.plan.additions[:PLAN_ROWS],
        "removals": result.plan.removals[:PLAN_ROWS],
        "plan_rows": PLAN_ROWS,
        "fingerprint": drift.fingerprint(result.plan),
        "can_apply": drift.can_apply(registry),
        "may_apply": access.can_change_registry(user, registry),
        "links": PrincipalLink.objects.filter(registry=registry).select_related("group"),
        "unlinked": _unlinked_principals(registry),
        "groups": DirectoryGroup.objects.order_by("display_name")
        if access.can_change_registry(user, registry)
        else (),
        "principal_kinds": Grant.PRINCIPAL_KINDS,
    }
    return render(request, "registries/reconcile.html", context)


def _unlinked_principals(registry: Registry) -> list[tuple[str, str, str]]:
    """(kind, id, name) of principals holding grants that no directory group stands behind."""
    rows = (
        Grant.objects.filter(registry=registry, group=None, user=None)
        .exclude(principal_kind__in=["robot", "other"])
        .values_list("principal_kind", "principal_id", "principal_name")
        .distinct()
        .order_by("principal_kind", "principal_name")
    )
    return list(rows[:PLAN_ROWS])


@require_POST
def principal_link_add(request: HttpRequest, registry_id: int) -> HttpResponse:
    """An admin links a registry principal (a team, a role) to the directory group it stands for."""
    user = signed_in_user(request)
    registry = access.get_registry_for_user(user, registry_id, write=True)
    # Named by its immutable id, as rules and sign-ins name groups; two directories may share one.
    groups = list(DirectoryGroup.objects.filter(external_id=request.POST.get("group", "").strip())[:2])
    try:
        if len(groups) != 1:
            raise RequestRejected(
                "give the directory group's id (its immutable id, as on the Access page)"
                if not groups
                else "two directories use that group id: link it from the group's own page instead"
            )
        group = groups[0]
        link = services.link_principal(
            registry,
            kind=request.POST.get("principal_kind", ""),
            principal_id=request.POST.get("principal_id", ""),
            name=request.POST.get("principal_name", ""),
            group=group,
            actor=user,
        )
    except RequestRejected as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Linked {link}. Drift is being recomputed.")
    return redirect("registries:reconcile", registry_id=registry.pk)


@require_POST
def principal_link_delete(request: HttpRequest, registry_id: int, link_id: int) -> HttpResponse:
    user = signed_in_user(request)
    registry = access.get_registry_for_user(user, registry_id, write=True)
    link = get_object_or_404(PrincipalLink, registry=registry, pk=link_id)
    services.unlink_principal(link, actor=user)
    messages.success(request, f"Unlinked {link}.")
    return redirect("registries:reconcile", registry_id=registry.pk)


@require_POST
def registry_reconcile_apply(request: HttpRequest, registry_id: int) -> HttpResponse:
    user = signed_in_user(request)
    registry = access.get_registry_for_user(user, registry_id, write=True)
    try:
        result = drift.apply_plan(registry, actor=user, expected=request.POST.get("fingerprint", ""))
    except RequestRejected as exc:
        messages.error(request, str(exc))
        return redirect("registries:reconcile", registry_id=registry.pk)
    if result.complete:
        messages.success(
            request, f"Applied all {result.planned} changes. A sync is queued to read the grants back."
        )
    else:
        messages.error(
            request,
            f"The registry refused a change after {len(result.applied)} of {result.planned} were applied: "
            f"{result.error}. What was applied is in the audit trail; the plan below is computed afresh "
            "once the queued sync has read the grants back.",
        )
    return redirect("registries:reconcile", registry_id=registry.pk)
