from __future__ import annotations

import django_filters

from portal.models import AuditEvent, Finding


class AuditEventFilter(django_filters.FilterSet):
    actor = django_filters.CharFilter(field_name="actor_label", lookup_expr="icontains")
    action = django_filters.CharFilter(field_name="action", lookup_expr="startswith")
    target = django_filters.CharFilter(method="filter_target")
    since = django_filters.IsoDateTimeFilter(field_name="at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="at", lookup_expr="lt")
    request_id = django_filters.CharFilter()

    class Meta:
        model = AuditEvent
        fields = ["actor", "action", "target", "since", "until", "request_id", "target_type"]

    def filter_target(self, queryset: object, name: str, value: str) -> object:
        return AuditEvent.objects.matching(target=value) & queryset  # type: ignore[operator]


class FindingFilter(django_filters.FilterSet):
    state = django_filters.ChoiceFilter(
        choices=[("open", "open"), ("suppressed", "suppressed"), ("resolved", "resolved")],
        method="filter_state",
    )

    class Meta:
        model = Finding
        fields = ["kind", "severity", "state", "subject_type"]

    def filter_state(self, queryset: object, name: str, value: str) -> object:
        by_state = {
            "open": Finding.objects.open(),
            "suppressed": Finding.objects.suppressed(),
            "resolved": Finding.objects.exclude(resolved_at=None),
        }
        return by_state[value] & queryset  # type: ignore[operator]
