"""manage.py create_scim_token prints the token once, on stdout alone."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from accounts.models import ScimToken
from portal.models import AuditEvent
from tests.accounts.scim.conftest import Scim


@pytest.mark.django_db
def test_create_scim_token_prints_a_working_token() -> None:
    out, err = StringIO(), StringIO()
    call_command("create_scim_token", "okta-prod", "--directory", "okta", stdout=out, stderr=err)
    secret = out.getvalue().strip()
    token = ScimToken.objects.get(name="okta-prod")
    assert token.directory == "okta"
    assert token.created_by is None
    assert secret.startswith("csp_")
    assert secret not in (token.digest, err.getvalue())
    assert "shown once" in err.getvalue()
    assert AuditEvent.objects.filter(action="scim_token.create", actor_id=None).count() == 1
    assert Scim(client=Client(), secret=secret, token=token).get("/Users").status == 200


@pytest.mark.django_db
def test_directory_defaults_and_names_are_unique() -> None:
    call_command("create_scim_token", "entra", stdout=StringIO(), stderr=StringIO())
    assert ScimToken.objects.get(name="entra").directory == "default"
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_scim_token", "ENTRA", stdout=StringIO(), stderr=StringIO())
