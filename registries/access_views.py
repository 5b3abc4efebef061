"""Access-rule pages: the rule list and editor with its live preview, the effective-access explorer,
"my access" for everyone, and the full access report as streamed CSV.

Reviewers read rules and ask the explorer; admins change rules, always through
registries/services.py. Every answer comes with its evidence: the rules and the memberships (with
their source and sync time) that grant it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseBase,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.access import signed_in_user
from accounts.models import DirectoryGroup, User
from accounts.permissions import role_required
from accounts.roles import Role
from portal import exports
from portal.errors import RequestRejected
from portal.querystring import query_without
from registries import effective, services
from registries.forms import AccessRuleForm, ExploreForm, ReportFilter, RuleFilter
from registries.models import AccessRule, Registry, Repository
from registries.patterns import InvalidPattern, Pattern, compile_pattern

PAGE_SIZE = 50
PREVIEW_SAMPLE = 10  # names shown per list in the preview; the counts are always complete
NEW_SAMPLE = 5
# Comparing with the group's existing rules costs one regex filter per rule; past this many the
# preview says so instead of building a very long query.
PREVIEW_BASELINE_LIMIT = 50
WHO_CAN_SHOWN = 50  # people listed per action on the explorer; the count is always complete
REACH_PAGE_SIZE = 20  # rules per page in the group explorer: each shows a sample (one query per rule)
REACH_SAMPLE = 5
REPORT_CHUNK = 2000


def _is_htmx(request: HttpRequest) -> bool:
    return bool(getattr(request, "htmx", False))


# --- The rule list ------------------------------------------------------------------------------


@require_GET
@role_required(Role.REVIEWER)
def rule_list(request: HttpRequest) -> HttpResponse:
    """Every rule, filtered; expired rules stay listed, marked expired with the time they ended."""
    rules = AccessRule.objects.select_related("group", "registry", "created_by").order_by("pattern", "pk")
    filters = RuleFilter(request.GET or None, queryset=rules)
    page = Paginator(filters.qs, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "filters": filters,
        "page": page,
        "query": query_without(request, "page"),
        "can_change": signed_in_user(request).has_role(Role.ADMIN),
        "now": timezone.now(),
    }
    template = "registries/access/_rules.html" if _is_htmx(request) else "registries/access/rules.html"
    return render(request, template, context)


@require_GET
@role_required(Role.REVIEWER)
def rule_detail(request: HttpRequest, rule_id: int) -> HttpResponse:
    """One rule with what it reaches today: the group's active members and the matching repositories."""
    rule = get_object_or_404(AccessRule.objects.select_related("group", "registry", "created_by"), pk=rule_id)
    people = _active_members(rule.group)
    repositories = Repository.objects.filter(effective.repository_scope(rule)).select_related("registry")
    context = {
        "rule": rule,
        "people": _sample(people.order_by("username"), PREVIEW_SAMPLE),
        "repositories": _sample(repositories.order_by("registry__name", "name"), PREVIEW_SAMPLE),
        "can_change": signed_in_user(request).has_role(Role.ADMIN),
    }
    return render(request, "registries/access/rule_detail.html", context)


# --- Creating, changing and removing rules ------------------------------------------------------


@require_http_methods(["GET", "POST"])
@role_required(Role.ADMIN)
def rule_add(request: HttpRequest) -> HttpResponse:
    form = AccessRuleForm(request.POST or None)
    if request.method == "POST" and form.is_valid() and (rule := _save(request, form, None)):
        messages.success(request, f"Rule {rule.pattern} for {rule.group} saved.")
        return redirect("registries:rule_detail", rule_id=rule.pk)
    return render(request, "registries/access/rule_form.html", {"form": form, "rule": None})


@require_http_methods(["GET", "POST"])
@role_required(Role.ADMIN)
def rule_edit(request: HttpRequest, rule_id: int) -> HttpResponse:
    rule = get_object_or_404(AccessRule.objects.select_related("group", "registry"), pk=rule_id)
    form = AccessRuleForm(request.POST or None, rule=rule)
    if request.method == "POST" and form.is_valid() and _save(request, form, rule):
        messages.success(request, f"Rule {rule.pattern} for {rule.group} saved.")
        return redirect("registries:rule_detail", rule_id=rule.pk)
    return render(request, "registries/access/rule_form.html", {"form": form, "rule": rule})


def _save(request: HttpRequest, form: AccessRuleForm, rule: AccessRule | None) -> AccessRule | None:
    """Save through the service; its refusal becomes a form error, next to the field when it names one."""
    try:
        return services.save_access_rule(rule, form.rule_request(), actor=signed_in_user(request))
    except RequestRejected as exc:
        message = str(exc)
        field_name = "pattern" if message.startswith("pattern: ") else None
        form.add_error(field_name, message.removeprefix("pattern: "))
        return None


@require_POST
@role_required(Role.ADMIN)
def rule_delete(request: HttpRequest, rule_id: int) -> HttpResponse:
    rule = get_object_or_404(AccessRule.objects.select_related("group", "registry"), pk=rule_id)
    services.delete_access_rule(rule, actor=signed_in_user(request))
    messages.success(request, f"Rule {rule.pattern} for {rule.group} removed.")
    return redirect("registries:rules")


# --- The live preview ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """A complete count and the first few names."""

    count: int
    names: list[str]

    @property
    def more(self) -> int:
        return self.count - len(self.names)


@dataclass(frozen=True)
class Preview:
    group: DirectoryGroup
    registry: Registry | None
    pattern: Pattern
    actions: list[str]
    expires_at: datetime | None
    people: Sample
    repositories: Sample
    # Per action, the repositories this rule would open to the group that its rules in force
    # (the edited rule as stored included) do not already grant. None: too many rules to compare.
    new_repositories: dict[str, Sample] | None
    # When an edit moves the rule to another group: the people it would newly reach.
    new_people: Sample | None = None


def _sample(queryset: QuerySet[Any], size: int) -> Sample:
    return Sample(count=queryset.count(), names=[str(row) for row in queryset[:size]])


def _active_members(group: DirectoryGroup | int) -> QuerySet[User]:
    """The members a rule would reach now: active in the directory and in Django."""
    return User.objects.filter(memberships__group=group, status=User.Status.ACTIVE, is_active=True)


def _usernames(people: QuerySet[User]) -> QuerySet[User]:
    return people.order_by("username")


def preview_rule(
    *,
    group: DirectoryGroup,
    registry: Registry | None,
    pattern: Pattern,
    actions: list[str],
    expires_at: datetime | None = None,
    editing: AccessRule | None = None,
) -> Preview:
    """What a rule would grant if saved: whom, where, and what of that is new for the group."""
    people = _active_members(group)
    repositories = Repository.objects.filter(name__regex=pattern.anchored).select_related("registry")
    if registry is not None:
        repositories = repositories.filter(registry=registry)
    repositories = repositories.order_by("registry__name", "name")
    new_people = None
    if editing is not None and editing.group_id != group.pk:
        new_people = _sample(_usernames(people.exclude(memberships__group=editing.group_id)), NEW_SAMPLE)
    return Preview(
        group=group,
        registry=registry,
        pattern=pattern,
        actions=actions,
        expires_at=expires_at,
        people=_sample(_usernames(people), PREVIEW_SAMPLE),
        repositories=_sample(repositories, PREVIEW_SAMPLE),
        new_repositories=_new_repositories(group, repositories, actions),
        new_people=new_people,
    )


def _new_repositories(
    group: DirectoryGroup, repositories: QuerySet[Repository], actions: list[str]
) -> dict[str, Sample] | None:
    baseline = list(AccessRule.objects.in_force().filter(group=group)[: PREVIEW_BASELINE_LIMIT + 1])
    if len(baseline) > PREVIEW_BASELINE_LIMIT:
        return None
    gained: dict[str, Sample] = {}
    for action in actions:
        granting = [effective.repository_scope(rule) for rule in baseline if action in rule.actions]
        covered = Q()
        for scope in granting:
            covered |= scope
        gained[action] = _sample(repositories.exclude(covered) if granting else repositories, NEW_SAMPLE)
    return gained


@require_POST
@role_required(Role.ADMIN)
def rule_preview(request: HttpRequest) -> HttpResponse:
    """The editor's live preview (htmx). A problem in the form is shown in the partial, never a 4xx/5xx:
    it is a preview, and the person is still typing."""
    context = _preview_context(request)
    return render(request, "registries/access/_preview.html", context)


def _preview_context(request: HttpRequest) -> dict[str, Any]:
    editing = _edited_rule(request.POST.get("editing", ""))
    form = AccessRuleForm(request.POST, rule=editing)
    form.is_valid()  # the justification and expiry do not matter to the preview; their errors are ignored
    data, errors = form.cleaned_data, form.errors
    for name, ask in (
        ("pattern", "Type a pattern to see what it matches."),
        ("group", "Choose a group to see whom the rule reaches."),
        ("registry", "Choose a registry, or all registries."),
        ("actions", "Choose at least one action."),
    ):
        if name in errors:
            return {"problem": " ".join(map(str, errors[name])) if request.POST.get(name) else ask}
    try:
        pattern = compile_pattern(data["pattern"])
    except InvalidPattern as exc:  # clean_pattern already refused it; kept for a direct call
        return {"problem": str(exc)}
    preview = preview_rule(
        group=data["group"],
        registry=data.get("registry"),
        pattern=pattern,
        actions=list(data["actions"]),
        expires_at=data.get("expires_at"),
        editing=editing,
    )
    return {"preview": preview, "editing": editing}


def _edited_rule(raw: str) -> AccessRule | None:
    return AccessRule.objects.filter(pk=int(raw)).first() if raw.isdigit() else None


# --- The explorer -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reach:
    rule: AccessRule
    count: int
    sample: list[str]


@require_GET
@role_required(Role.REVIEWER)
def explore(request: HttpRequest) -> HttpResponse:
    """Three questions, each answered with evidence: what may this person do, who may act on this
    repository, what does this group reach."""
    form = ExploreForm(request.GET or None)
    by = request.GET.get("by") or "user"
    context: dict[str, Any] = {"form": form, "by": by}
    if form.is_valid():
        data = form.cleaned_data
        if by == "user" and data["person"]:
            context |= _explore_user(data["person"], data["registry"], data["repository"])
        elif by == "repository" and data["registry"] and data["repository"]:
            context |= _explore_repository(data["registry"], data["repository"])
        elif by == "repository" and (data["registry"] or data["repository"]):
            context["problem"] = "Choose a registry and type a repository name."
        elif by == "group" and data["group"]:
            context |= _explore_group(data["group"], request.GET.get("page"))
            context["page_query"] = query_without(request, "page")
    return render(request, "registries/access/explore.html", context)


def find_person(text: str) -> tuple[User | None, list[User]]:
    """(the person, if the text names exactly one) and otherwise the candidates, for a search box."""
    text = text.strip()
    if exact := User.objects.filter(username=text).first():
        return exact, []
    candidates = list(
        User.objects.filter(
            Q(username__icontains=text) | Q(display_name__icontains=text) | Q(email__icontains=text)
        ).order_by("username")[:20]
    )
    return (candidates[0], []) if len(candidates) == 1 else (None, candidates)


def _explore_user(text: str, registry: Registry | None, repository: str) -> dict[str, Any]:
    person, candidates = find_person(text)
    if person is None:
        return {"candidates": candidates, "problem": "" if candidates else f"Nobody matches {text!r}."}
    answer: dict[str, Any] = {
        "person": person,
        "memberships": person.memberships.select_related("group").order_by("group__display_name"),
    }
    if repository and registry is None:
        answer["problem"] = "Choose the registry the repository is on."
    elif repository and registry is not None:
        access = effective.user_access(person, registry, repository)
        rules = AccessRule.objects.select_related("registry").in_bulk([e.rule_id for e in access.evidence])
        answer |= {
            "access": access,
            "allowed": [action for action in AccessRule.ACTIONS if access.allows(action)],
            "evidence_rows": [(e, rules.get(e.rule_id)) for e in access.evidence],
        }
    else:
        answer["reaching"] = effective.rules_reaching(person, registry=registry)
    return answer


def _explore_repository(registry: Registry, repository: str) -> dict[str, Any]:
    answers = []
    for action in AccessRule.ACTIONS:
        people = effective.who_can(registry, repository, action)
        robots = effective.robots_who_can(registry, repository, action)
        answers.append(
            (action, len(people), people[:WHO_CAN_SHOWN], max(len(people) - WHO_CAN_SHOWN, 0), robots)
        )
    inventoried = Repository.objects.filter(registry=registry, name=repository).first()
    return {"who_can": answers, "inventoried": inventoried, "asked": (registry, repository)}


def reach_rows(reach: Iterable[tuple[AccessRule, QuerySet[Repository]]]) -> list[Reach]:
    """A page of group_reach's answer, with each rule's repository count (one query for the page)
    and a few of the names (one query per rule on the page)."""
    reach = list(reach)
    counts = effective.reach_counts(rule for rule, _ in reach)
    return [
        Reach(rule, counts.get(rule.pk, 0), [r.name for r in repositories.order_by("name")[:REACH_SAMPLE]])
        for rule, repositories in reach
    ]


def _explore_group(group: DirectoryGroup, page_number: Any) -> dict[str, Any]:
    page = Paginator(effective.group_reach(group), REACH_PAGE_SIZE).get_page(page_number)
    return {
        "chosen_group": group,
        "reach_page": page,
        "reach": reach_rows(page),
        "member_count": _active_members(group).count(),
    }


# --- My access ----------------------------------------------------------------------------------


@require_GET
def my_access(request: HttpRequest) -> HttpResponse:
    """Everyone's own view: their groups, the rules in force reaching them, and how far each reaches."""
    user = signed_in_user(request)
    reaching = effective.rules_reaching(user)
    counts = effective.reach_counts(rule for rule, _ in reaching)
    context = {
        "memberships": user.memberships.select_related("group").order_by("group__display_name"),
        "rows": [(rule, membership, counts.get(rule.pk, 0)) for rule, membership in reaching],
    }
    return render(request, "registries/access/mine.html", context)


# --- The access report --------------------------------------------------------------------------


def _cell(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    return "" if value is None else value


def report_lines(rows: Iterable[tuple[Any, ...]]) -> Iterator[str]:
    """CSV text, one line at a time: a header, then each row with formula-like cells made inert."""
    return exports.csv_lines(effective.REPORT_COLUMNS, ([_cell(value) for value in row] for row in rows))


def report_response(*, registry: Registry | None, group: DirectoryGroup | None) -> StreamingHttpResponse:
    """The full access report, streamed: rows are read in chunks and written as they come."""
    rows = effective.access_report(registry=registry, group=group, chunk_size=REPORT_CHUNK)
    response = StreamingHttpResponse(report_lines(rows), content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = f'attachment; filename="customs-access-{stamp}.csv"'
    response["Cache-Control"] = "no-store"
    return response


@require_GET
@role_required(Role.REVIEWER)
def access_report(request: HttpRequest) -> HttpResponseBase:
    filters = ReportFilter(request.GET)
    if problem := filters.problem():
        return HttpResponseBadRequest(problem, content_type="text/plain; charset=utf-8")
    return report_response(registry=filters.cleaned_data["registry"], group=filters.cleaned_data["group"])
