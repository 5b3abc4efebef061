from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from django import forms
from django.utils import timezone

from portal import findings


class SuppressForm(forms.Form):
    until = forms.DateField(
        label="Suppress until",
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="The finding comes back by itself on this date.",
    )
    justification = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=2000,
        help_text="Why the risk is accepted. Recorded in the audit trail.",
    )

    def clean_until(self) -> Any:
        return _suppression_end(self.cleaned_data["until"])


def _suppression_end(until: date) -> date:
    if until <= timezone.localdate():
        raise forms.ValidationError("Choose a date after today.")
    if until > timezone.localdate() + timedelta(days=366):
        raise forms.ValidationError("Suppress for at most a year, then look again.")
    return until


def start_of(day: date) -> datetime:
    """Midnight at the start of a day, server time: when a suppression chosen by date ends."""
    return timezone.make_aware(datetime.combine(day, time.min))


class AssignForm(forms.Form):
    assignee = forms.CharField(
        label="Assign to",
        required=False,
        max_length=150,
        help_text="A username. Leave empty to unassign.",
    )

    def clean_assignee(self) -> Any:
        return _person(self.cleaned_data["assignee"])


def _person(username: str) -> Any:
    try:
        return findings.assignee_named(username)
    except findings.AssignmentError as exc:
        raise forms.ValidationError(str(exc)) from exc


class FindingIdsField(forms.MultipleChoiceField):
    """Finding ids from the list's checkboxes, checked by shape: ids that match nothing refuse the change."""

    def valid_value(self, value: Any) -> bool:
        return str(value).isdigit()

    def clean(self, value: Any) -> list[int]:
        return [int(item) for item in super().clean(value)]


BULK_ACTIONS = [
    ("suppress", "Suppress (accept the risk)"),
    ("unsuppress", "End suppression"),
    ("assign", "Assign to"),
    ("unassign", "Unassign"),
]


class BulkFindingsForm(forms.Form):
    """One action on the findings ticked in the list, or on every finding its filters match."""

    action = forms.ChoiceField(choices=BULK_ACTIONS)
    choice = forms.ChoiceField(
        label="Apply to",
        choices=[("selected", "The selected findings"), ("matching", "All findings matching the filters")],
        initial="selected",
        widget=forms.RadioSelect,
    )
    ids = FindingIdsField(required=False)
    # How many findings the filters matched when the page was drawn: a change to a different set is refused.
    matching = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)
    until = forms.DateField(
        label="Suppress until",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="The findings come back by themselves on this date.",
    )
    justification = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        max_length=2000,
        help_text="Why the risk is accepted. Recorded in the audit trail.",
    )
    assignee = forms.CharField(label="Assignee", required=False, max_length=150, help_text="A username.")

    def action_fields(self) -> list[forms.BoundField]:
        """The fields that say what to do, drawn together under the list."""
        return [self[name] for name in ("action", "until", "justification", "assignee")]

    def clean_until(self) -> Any:
        until = self.cleaned_data["until"]
        return _suppression_end(until) if until else None

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("choice") == "selected" and not data.get("ids"):
            self.add_error(
                "ids", "Select at least one finding, or apply to all findings matching the filters."
            )
        if data.get("choice") == "matching" and data.get("matching") is None:
            self.add_error(None, "The number of matching findings is missing: reload the list and try again.")
        action = data.get("action")
        if action == "suppress":
            self._require("until", "Choose the date the suppression ends.")
            self._require("justification", "Say why the risk is accepted.")
        if action == "assign" and self._require(
            "assignee", "Name the person to assign to, or choose Unassign."
        ):
            try:
                data["assignee"] = _person(data["assignee"])
            except forms.ValidationError as exc:
                self.add_error("assignee", exc)
        return data

    def _require(self, name: str, message: str) -> bool:
        value = self.cleaned_data.get(name)
        if isinstance(value, str):
            value = value.strip()
        if value or name in self.errors:
            return bool(value)
        self.add_error(name, message)
        return False


class AuditSearchForm(forms.Form):
    actor = forms.CharField(required=False)
    action = forms.CharField(required=False, help_text="Prefix, e.g. token. or role_binding.create")
    target = forms.CharField(required=False)
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(
        required=False, widget=forms.DateInput(attrs={"type": "date"}), help_text="Inclusive."
    )
