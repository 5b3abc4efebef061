from __future__ import annotations

from django import forms
from django.conf import settings

from accounts.models import DirectoryGroup, PersonalToken, User
from accounts.roles import Role


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What uses it, e.g. “laptop” or “CI for team-x”.")
    kind = forms.ChoiceField(
        choices=PersonalToken.Kind.choices,
        initial=PersonalToken.Kind.API,
        help_text="API tokens call /api/v1/; registry tokens are for docker login.",
    )
    write = forms.BooleanField(
        required=False,
        label="Allow changes (API write scope)",
        help_text="Leave unticked for a read-only token.",
    )
    days = forms.IntegerField(
        min_value=1,
        max_value=settings.TOKEN_MAX_DAYS,
        initial=settings.TOKEN_DEFAULT_DAYS,
        label="Expires in (days)",
        help_text=f"At most {settings.TOKEN_MAX_DAYS}.",
    )

    def scopes(self) -> list[str]:
        if self.cleaned_data["kind"] == PersonalToken.Kind.REGISTRY:
            return ["registry"]
        return ["read", "write"] if self.cleaned_data["write"] else ["read"]


class RoleBindingForm(forms.Form):
    group = forms.ModelChoiceField(queryset=DirectoryGroup.objects.all(), help_text="A directory group.")
    role = forms.ChoiceField(choices=[(Role.REVIEWER, "Reviewer"), (Role.ADMIN, "Admin")])


class GroupOwnerForm(forms.Form):
    owner = forms.CharField(
        required=False,
        max_length=150,
        help_text="Username of who takes over this group's robots when the person who made them "
        "leaves. Empty: nobody (the offboarding policy decides).",
    )

    def clean_owner(self) -> User | None:
        username = self.cleaned_data["owner"].strip()
        if not username:
            return None
        owner = User.objects.filter(username=username).first()
        if owner is None:
            raise forms.ValidationError(f"No one is called {username}.")
        return owner


class RobotTokenForm(forms.Form):
    name = forms.CharField(
        max_length=64,
        help_text="Lowercase letters and digits joined by - _ or ., e.g. “ci-payments”. "
        "The registry username becomes robot$<name>; names are never reused.",
    )
    description = forms.CharField(
        required=False,
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="What uses it and who looks after it.",
    )
    days = forms.IntegerField(
        min_value=1,
        max_value=settings.TOKEN_MAX_DAYS,
        initial=settings.TOKEN_DEFAULT_DAYS,
        label="Expires in (days)",
        help_text=f"At most {settings.TOKEN_MAX_DAYS}.",
    )
