"""Registry forms (fields built from each kind's config class) and the repository filters.

RepositoryFilter serves both the repository browser and /api/v1/repositories/, so the two
cannot drift apart: one set of parameters (search, registry, namespace, region, ordering).
RuleFilter does the same for the access-rule list and /api/v1/access-rules/.
"""

from __future__ import annotations

import types
from datetime import datetime
from typing import Any

import django_filters
from django import forms
from django.db.models import QuerySet
from django.utils import timezone
from pydantic import SecretStr
from pydantic.fields import FieldInfo

from accounts.models import DirectoryGroup
from registries import connectors
from registries.models import AccessRule, AccessRuleQuerySet, Registry, Replica, Repository
from registries.patterns import MAX_LENGTH, InvalidPattern, compile_pattern, is_valid_repository_name
from registries.querysets import REPOSITORY_ORDERINGS, RepositoryQuerySet
from registries.services import RuleRequest

CONFIG_PREFIX = "config_"  # keeps config fields apart from the registry's own (a kind may have a "name")
# The endpoint is the registry's own field; the config class's `url` is filled from it.
ENDPOINT_FIELD = "url"


def _optional(annotation: Any) -> tuple[Any, bool]:
    """(the type inside `X | None`, whether None was allowed)."""
    if isinstance(annotation, types.UnionType):
        inner = [arg for arg in annotation.__args__ if arg is not type(None)]
        return (inner[0] if len(inner) == 1 else str), len(inner) < len(annotation.__args__)
    return annotation, False


def _label(name: str, info: FieldInfo) -> str:
    return info.title or name.replace("_", " ").capitalize()


def config_field(name: str, info: FieldInfo, *, editing: bool) -> forms.Field:
    """A form field for one config-class field; secrets become password inputs that never echo."""
    annotation, nullable = _optional(info.annotation)
    required = info.is_required() and not nullable
    label, help_text = _label(name, info), info.description or ""
    initial = None if info.is_required() else info.default
    if annotation is SecretStr:
        # render_value=False: neither the stored secret nor a just-typed one is ever sent back.
        return forms.CharField(
            label=label,
            required=required and not editing,
            strip=False,
            widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
            help_text="Leave blank to keep the stored value." if editing else help_text,
        )
    if annotation is bool:
        return forms.BooleanField(label=label, required=False, initial=initial, help_text=help_text)
    if annotation is int:
        return forms.IntegerField(label=label, required=required, initial=initial, help_text=help_text)
    return forms.CharField(label=label, required=required, initial=initial, help_text=help_text)


class RegistryForm(forms.Form):
    name = forms.SlugField(max_length=64, help_text="A short name, e.g. prod-eu.")
    endpoint = forms.CharField(
        max_length=500, help_text="The registry's URL, e.g. https://registry.example.com"
    )
    region = forms.CharField(
        max_length=64, required=False, help_text="Where the primary endpoint serves from."
    )
    sync_enabled = forms.BooleanField(required=False, initial=True, label="Sync on a schedule")
    sync_interval_minutes = forms.IntegerField(min_value=5, max_value=7 * 24 * 60, initial=60)
    sync_concurrency = forms.IntegerField(
        min_value=1, max_value=64, initial=8, help_text="Parallel requests while syncing."
    )
    token_service = forms.CharField(
        max_length=100,
        required=False,
        label="Token service",
        help_text="Set when Customs is this registry's token server: the auth.token.service in its config.",
    )

    def __init__(self, data: Any = None, *, kind: str, registry: Registry | None = None) -> None:
        self.kind, self.registry = kind, registry
        editing = registry is not None and registry.pk is not None
        initial: dict[str, Any] = {}
        if registry is not None and editing:
            initial = {name: getattr(registry, name) for name in self.base_fields}
            initial |= {CONFIG_PREFIX + k: v for k, v in registry.config.items()}
        super().__init__(data, initial=initial)
        config_class = connectors.CONNECTORS[kind].config_class
        self.secret_names = config_class.secret_fields()
        for name, info in config_class.model_fields.items():
            if name != ENDPOINT_FIELD:
                self.fields[CONFIG_PREFIX + name] = config_field(name, info, editing=editing)

    def clean_endpoint(self) -> str:
        return str(self.cleaned_data["endpoint"]).strip().rstrip("/")

    def clean_name(self) -> str:
        name = str(self.cleaned_data["name"])
        others = Registry.objects.filter(name=name)
        if self.registry is not None and self.registry.pk is not None:
            others = others.exclude(pk=self.registry.pk)
        if others.exists():
            raise forms.ValidationError("Another registry has this name.")
        return name

    def clean_token_service(self) -> str:
        service = str(self.cleaned_data.get("token_service") or "").strip()
        others = Registry.objects.filter(token_service=service)
        if self.registry is not None and self.registry.pk is not None:
            others = others.exclude(pk=self.registry.pk)
        if service and others.exists():
            raise forms.ValidationError("Another registry uses this token service name.")
        return service

    def _config_values(self) -> dict[str, Any]:
        return {
            name.removeprefix(CONFIG_PREFIX): value
            for name, value in self.cleaned_data.items()
            if name.startswith(CONFIG_PREFIX)
        }

    def public(self) -> dict[str, Any]:
        """Config values that are not secrets; a blank optional text field means "not set"."""
        values = self._config_values()
        return {k: (None if v == "" else v) for k, v in values.items() if k not in self.secret_names}

    def secrets(self) -> dict[str, str]:
        """Only the secrets typed in now: a blank one keeps the stored value."""
        return {k: v for k, v in self._config_values().items() if k in self.secret_names and v}

    def apply_to(self, registry: Registry) -> Registry:
        """Copy the registry's own fields onto `registry` (not saved)."""
        registry.kind = self.kind
        for name in self.base_fields:
            setattr(registry, name, self.cleaned_data[name])
        return registry

    def transient(self) -> Registry:
        """An unsaved registry with this form's settings, for a connection test before saving."""
        # Only what a connector reads: the test must work before the name and schedule are filled in.
        registry = Registry(
            kind=self.kind, endpoint=self.cleaned_data.get("endpoint", ""), config=self.public()
        )
        # Stored secrets go only to the endpoint they were typed for: a test against another host
        # would hand it the password (services.save_registry refuses the same for a save).
        same_endpoint = self.registry is not None and self.registry.endpoint == registry.endpoint
        stored = self.registry.secrets() if self.registry is not None and same_endpoint else {}
        registry.set_secrets(stored | self.secrets())
        return registry

    def connection_errors(self) -> list[str]:
        """Problems in the fields a connection test needs (the name and schedule do not matter)."""
        self.is_valid()
        return [
            f"{self.fields[name].label or name}: {' '.join(str(m) for m in messages)}"
            for name, messages in self.errors.items()
            if name == "endpoint" or name.startswith(CONFIG_PREFIX)
        ]


class ReplicaForm(forms.Form):
    region = forms.CharField(max_length=64)
    endpoint = forms.CharField(
        max_length=500, help_text="The replica's URL, e.g. https://eu.registry.example.com"
    )


def region_choices() -> list[tuple[str, str]]:
    """Every region a primary endpoint or a replica serves from, in one query."""
    primaries = Registry.objects.exclude(region="").order_by().values_list("region", flat=True)
    regions = primaries.union(Replica.objects.order_by().values_list("region", flat=True))
    return [(region, region) for region in sorted(regions)]


def _visible_registries(request: Any) -> QuerySet[Registry]:
    # Schema generation has no request; the choices do not matter there.
    return Registry.objects.visible_to(getattr(request, "user", None)).only("pk", "name")


class RepositoryFilter(django_filters.FilterSet):
    search = django_filters.CharFilter(method="filter_search", label="Name contains")
    # django-filter calls a callable queryset with the request; the stubs only know querysets.
    registry = django_filters.ModelChoiceFilter(queryset=_visible_registries)  # type: ignore[arg-type]
    namespace = django_filters.CharFilter(help_text="Exact, e.g. team for team/app.")
    region = django_filters.ChoiceFilter(
        method="filter_region", label="Region", help_text="Content held in this region."
    )
    ordering = django_filters.ChoiceFilter(
        label="Sort by",
        choices=[(key, label) for key, (label, _) in REPOSITORY_ORDERINGS.items()],
        method="filter_ordering",
        empty_label=None,
    )

    class Meta:
        model = Repository
        fields = ["search", "registry", "namespace", "region", "ordering"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Read once per request: a callable would run again for validation and for rendering.
        self.filters["region"].extra["choices"] = region_choices()

    def filter_search(self, queryset: RepositoryQuerySet, name: str, value: str) -> RepositoryQuerySet:
        return queryset.search(value.strip())

    def filter_region(self, queryset: RepositoryQuerySet, name: str, value: str) -> RepositoryQuerySet:
        return queryset.in_region(value)

    def filter_ordering(self, queryset: RepositoryQuerySet, name: str, value: str) -> RepositoryQuerySet:
        return queryset.sorted_by(value)


# --- Access rules ---------------------------------------------------------------------------------

ACTION_CHOICES = [(action, action) for action in AccessRule.ACTIONS]
PATTERN_HELP = "Lowercase repository names; * within one path segment, ** for whole segments (team/**)."


class AccessRuleForm(forms.Form):
    """The rule editor. Saving goes through services.save_access_rule; the preview reads the same fields."""

    group = forms.ModelChoiceField(
        queryset=DirectoryGroup.objects.all(), help_text="Its members get the access (by immutable id)."
    )
    registry = forms.ModelChoiceField(
        queryset=Registry.objects.all(), required=False, empty_label="All registries"
    )
    pattern = forms.CharField(max_length=MAX_LENGTH, help_text=PATTERN_HELP)
    actions = forms.MultipleChoiceField(
        choices=ACTION_CHOICES, widget=forms.CheckboxSelectMultiple, initial=["pull"]
    )
    expires_at = forms.DateTimeField(
        required=False,
        label="Expires at",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="Empty: until removed. The rule stops granting at this time by itself.",
    )
    justification = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), help_text="Why this access is needed; reviewers read it."
    )

    def __init__(self, data: Any = None, *, rule: AccessRule | None = None) -> None:
        self.rule = rule
        initial: dict[str, Any] = {}
        if rule is not None:
            initial = {
                "group": rule.group_id,
                "registry": rule.registry_id,
                "pattern": rule.pattern,
                "actions": rule.actions,
                "expires_at": timezone.localtime(rule.expires_at) if rule.expires_at else None,
                "justification": rule.justification,
            }
        super().__init__(data, initial=initial)

    def clean_pattern(self) -> str:
        try:
            return compile_pattern(str(self.cleaned_data["pattern"])).text
        except InvalidPattern as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_expires_at(self) -> datetime | None:
        expires_at: datetime | None = self.cleaned_data.get("expires_at")
        if expires_at is not None and expires_at <= timezone.now():
            raise forms.ValidationError("The expiry must be in the future.")
        return expires_at

    def rule_request(self) -> RuleRequest:
        data = self.cleaned_data
        return RuleRequest(
            group=data["group"],
            pattern=data["pattern"],
            actions=frozenset(data["actions"]),
            justification=data["justification"],
            registry=data["registry"],
            expires_at=data["expires_at"],
        )


class RuleFilter(django_filters.FilterSet):
    """The rule list's filters, for the page and /api/v1/access-rules/ alike."""

    search = django_filters.CharFilter(method="filter_search", label="Pattern contains")
    group = django_filters.ModelChoiceFilter(queryset=DirectoryGroup.objects.all())
    registry = django_filters.ModelChoiceFilter(
        queryset=Registry.objects.all(),
        method="filter_registry",
        help_text="Rules that apply there, including rules for all registries.",
    )
    action = django_filters.ChoiceFilter(choices=ACTION_CHOICES, method="filter_action", label="Grants")
    state = django_filters.ChoiceFilter(
        choices=[("in_force", "In force"), ("expired", "Expired")], method="filter_state", label="State"
    )

    class Meta:
        model = AccessRule
        fields = ["search", "group", "registry", "action", "state"]

    def filter_search(self, queryset: AccessRuleQuerySet, name: str, value: str) -> AccessRuleQuerySet:
        return queryset.filter(pattern__icontains=value.strip()) if value.strip() else queryset

    def filter_registry(self, queryset: AccessRuleQuerySet, name: str, value: Registry) -> AccessRuleQuerySet:
        return queryset.for_registry(value)

    def filter_action(self, queryset: AccessRuleQuerySet, name: str, value: str) -> AccessRuleQuerySet:
        return queryset.granting(value)

    def filter_state(self, queryset: AccessRuleQuerySet, name: str, value: str) -> AccessRuleQuerySet:
        if value == "expired":
            return queryset.filter(expires_at__lte=timezone.now())
        return queryset.in_force()


class ExploreForm(forms.Form):
    """The explorer's three questions share one GET form; `by` says which one is asked."""

    by = forms.ChoiceField(
        choices=[("user", "Person"), ("repository", "Repository"), ("group", "Group")], required=False
    )
    person = forms.CharField(required=False, max_length=150, label="Person", help_text="Username or name.")
    registry = forms.ModelChoiceField(queryset=Registry.objects.all(), required=False)
    repository = forms.CharField(required=False, max_length=MAX_LENGTH, help_text="e.g. payments/api")
    group = forms.ModelChoiceField(queryset=DirectoryGroup.objects.all(), required=False)

    def clean_repository(self) -> str:
        name = str(self.cleaned_data.get("repository") or "").strip()
        if name and not is_valid_repository_name(name):
            raise forms.ValidationError(
                f"{name!r} is not a repository name (lowercase, segments joined by /)."
            )
        return name


class ReportFilter(forms.Form):
    """The access report's optional filters (page and API)."""

    registry = forms.ModelChoiceField(queryset=Registry.objects.all(), required=False)
    group = forms.ModelChoiceField(queryset=DirectoryGroup.objects.all(), required=False)

    def problem(self) -> str:
        """The first error, in words, or "" when the filters are valid."""
        if self.is_valid():
            return ""
        return "; ".join(f"{name}: {' '.join(map(str, messages))}" for name, messages in self.errors.items())
