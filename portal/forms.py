from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.utils import timezone


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
        until = self.cleaned_data["until"]
        if until <= timezone.localdate():
            raise forms.ValidationError("Choose a date after today.")
        if until > timezone.localdate() + timedelta(days=366):
            raise forms.ValidationError("Suppress for at most a year, then look again.")
        return until


class AuditSearchForm(forms.Form):
    actor = forms.CharField(required=False)
    action = forms.CharField(required=False, help_text="Prefix, e.g. token. or role_binding.create")
    target = forms.CharField(required=False)
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(
        required=False, widget=forms.DateInput(attrs={"type": "date"}), help_text="Inclusive."
    )
