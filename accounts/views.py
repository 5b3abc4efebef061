"""Pages for people and their access to Customs itself: tokens, groups and portal roles."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import access, services
from accounts.access import signed_in_user
from accounts.forms import GroupOwnerForm, RobotTokenForm, RoleBindingForm, TokenForm
from accounts.models import DirectoryGroup, PersonalToken, RobotToken, RoleBinding
from accounts.permissions import role_required
from accounts.roles import Role
from portal.errors import RequestRejected

PAGE_SIZE = 50


@require_http_methods(["GET", "POST"])
def settings_page(request: HttpRequest) -> HttpResponse:
    """My tokens: list, create (the secret is shown once, on the next page), revoke."""
    user = signed_in_user(request)
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            issued = services.create_token(
                user,
                actor=user,
                name=form.cleaned_data["name"],
                kind=form.cleaned_data["kind"],
                scopes=form.scopes(),
                days=form.cleaned_data["days"],
            )
        except RequestRejected as exc:
            form.add_error(None, str(exc))
        else:
            # Rendered, not redirected: the secret must never land in a session, URL or cache.
            response = render(request, "accounts/token_created.html", {"issued": issued})
            response["Cache-Control"] = "no-store"
            return response
    tokens = PersonalToken.objects.filter(owner=user)
    memberships = (
        user.memberships.select_related("group")
        .prefetch_related("group__role_bindings")
        .order_by("group__display_name")
    )
    return render(
        request, "accounts/settings.html", {"form": form, "tokens": tokens, "memberships": memberships}
    )


@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    user = signed_in_user(request)
    token = access.get_token_for_user(user, token_id, write=True)
    if services.revoke_token(token, actor=user):
        messages.success(request, f"Token “{token.name}” revoked.")
    # A fixed choice of pages, never a URL from the form: no open redirect.
    return redirect(
        "accounts:credentials" if request.POST.get("back") == "credentials" else "accounts:settings"
    )


@require_GET
@role_required(Role.REVIEWER)
def credential_list(request: HttpRequest) -> HttpResponse:
    """Every Customs token and robot token, for reviewers: owner, scope, expiry, last use."""
    state = request.GET.get("state", "active")
    tokens = PersonalToken.objects.visible_to(signed_in_user(request)).select_related("owner")
    robots = RobotToken.objects.visible_to(signed_in_user(request)).select_related("group", "created_by")
    if state == "active":
        tokens, robots = tokens.active(), robots.active()
    page = Paginator(tokens, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "accounts/credentials.html",
        {
            "page": page,
            # Unpaginated: robots are made by admins one at a time, so there are tens, not thousands.
            "robots": robots,
            "state": state,
            "can_revoke_any": signed_in_user(request).has_role(Role.ADMIN),
        },
    )


@require_GET
@role_required(Role.REVIEWER)
def access_page(request: HttpRequest) -> HttpResponse:
    """Directory groups, their members and the portal roles bound to them."""
    search = request.GET.get("q", "").strip()
    # Explicit order: the member count adds a GROUP BY, which makes Django drop Meta.ordering.
    groups = (
        DirectoryGroup.objects.search(search)
        .annotate(member_count=Count("memberships"))
        .order_by("display_name", "pk")
        .prefetch_related("role_bindings")
    )
    page = Paginator(groups, PAGE_SIZE).get_page(request.GET.get("page"))
    bindings = RoleBinding.objects.select_related("group", "created_by")
    return render(
        request,
        "accounts/access.html",
        {
            "page": page,
            "q": search,
            "bindings": bindings,
            "form": RoleBindingForm(),
        },
    )


@require_GET
@role_required(Role.REVIEWER)
def group_detail(request: HttpRequest, group_id: int) -> HttpResponse:
    """A group's members and its robot tokens; admins create and revoke robots here."""
    group = get_object_or_404(DirectoryGroup, pk=group_id)
    return _group_page(request, group, RobotTokenForm())


@require_POST
@role_required(Role.ADMIN)
def group_owner(request: HttpRequest, group_id: int) -> HttpResponse:
    """Name the group's owner: who takes over its robots when the person who made them leaves."""
    group = get_object_or_404(DirectoryGroup, pk=group_id)
    form = GroupOwnerForm(request.POST)
    if form.is_valid():
        try:
            services.set_group_owner(group, form.cleaned_data["owner"], actor=signed_in_user(request))
        except RequestRejected as exc:
            form.add_error("owner", str(exc))
        else:
            messages.success(request, f"Owner of {group.display_name}: {group.owner or 'nobody'}.")
            return redirect("accounts:group_detail", group_id=group.pk)
    return _group_page(request, group, RobotTokenForm(), owner_form=form, status=400)


def _group_page(
    request: HttpRequest,
    group: DirectoryGroup,
    robot_form: RobotTokenForm,
    *,
    owner_form: GroupOwnerForm | None = None,
    status: int = 200,
) -> HttpResponse:
    memberships = group.memberships.select_related("user").order_by("user__username")
    page = Paginator(memberships, PAGE_SIZE).get_page(request.GET.get("page"))
    robots = group.robot_tokens.select_related("created_by")
    context = {
        "group": group,
        "page": page,
        "robots": robots,
        "robot_form": robot_form,
        "owner_form": owner_form
        or GroupOwnerForm(initial={"owner": group.owner.username if group.owner else ""}),
        "can_manage_robots": signed_in_user(request).has_role(Role.ADMIN),
    }
    return render(request, "accounts/group_detail.html", context, status=status)


@require_POST
@role_required(Role.ADMIN)
def robot_create(request: HttpRequest, group_id: int) -> HttpResponse:
    """A robot token for this group; the secret is shown once, on the page this answers."""
    group = get_object_or_404(DirectoryGroup, pk=group_id)
    form = RobotTokenForm(request.POST)
    if form.is_valid():
        try:
            issued = services.create_robot_token(
                group,
                actor=signed_in_user(request),
                name=form.cleaned_data["name"],
                description=form.cleaned_data["description"],
                days=form.cleaned_data["days"],
            )
        except RequestRejected as exc:
            form.add_error("name", str(exc))
        else:
            # Rendered, not redirected: the secret must never land in a session, URL or cache.
            response = render(request, "accounts/robot_created.html", {"issued": issued})
            response["Cache-Control"] = "no-store"
            return response
    return _group_page(request, group, form, status=400)


@require_POST
@role_required(Role.ADMIN)
def robot_revoke(request: HttpRequest, robot_id: int) -> HttpResponse:
    user = signed_in_user(request)
    robot = get_object_or_404(RobotToken.objects.visible_to(user), pk=robot_id)
    if services.revoke_robot_token(robot, actor=user):
        messages.success(request, f"Robot token {robot.username} revoked.")
    # A fixed choice of pages, never a URL from the form: no open redirect.
    if request.POST.get("back") == "credentials" or robot.group_id is None:
        return redirect("accounts:credentials")
    return redirect("accounts:group_detail", group_id=robot.group_id)


@require_POST
@role_required(Role.ADMIN)
def role_binding_create(request: HttpRequest) -> HttpResponse:
    form = RoleBindingForm(request.POST)
    if form.is_valid():
        try:
            services.bind_role(
                form.cleaned_data["group"], form.cleaned_data["role"], actor=signed_in_user(request)
            )
        except RequestRejected as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, "Role granted.")
    else:
        messages.error(request, "Choose a group and a role.")
    return redirect("accounts:access")


@require_POST
@role_required(Role.ADMIN)
def role_binding_delete(request: HttpRequest, binding_id: int) -> HttpResponse:
    binding = get_object_or_404(RoleBinding.objects.select_related("group"), pk=binding_id)
    services.unbind_role(binding, actor=signed_in_user(request))
    messages.success(request, f"{binding.group} no longer holds the {binding.get_role_display()} role.")
    return redirect("accounts:access")
