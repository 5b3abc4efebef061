"""The add-a-registry form says, for each kind, what its account needs before anyone saves it.

The list is the connector's own `needs` (what Test connection checks, least privilege first), shown
whole and in order: an admin creating the account reads it there and grants no more.
"""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from accounts.models import User
from registries import connectors
from tests import factories

pytestmark = pytest.mark.django_db

NEEDS_CARD = re.compile(r"<h2>What the account needs</h2>.*?<ul>(?P<items>.*?)</ul>", re.S)


def needs_shown(page: str) -> list[str]:
    card = NEEDS_CARD.search(page)
    assert card, "the form has no 'What the account needs' card"
    return re.findall(r"<li>(.*?)</li>", card["items"], re.S)


@pytest.mark.parametrize("kind", sorted(connectors.CONNECTORS))
def test_the_new_registry_form_lists_what_the_kinds_account_needs(
    client: Client, admin: User, kind: str
) -> None:
    needs = connectors.CONNECTORS[kind].needs  # type: ignore[attr-defined]
    assert needs, f"{kind} says nothing about what its account needs"
    client.force_login(admin)
    response = client.get(reverse("registries:add"), {"kind": kind})
    assert response.status_code == 200
    assert needs_shown(response.content.decode()) == [escape(need) for need in needs]


def test_the_edit_form_lists_them_too(client: Client, admin: User) -> None:
    registry = factories.registry()
    client.force_login(admin)
    page = client.get(reverse("registries:edit", args=[registry.pk])).content.decode()
    needs = connectors.CONNECTORS[registry.kind].needs  # type: ignore[attr-defined]
    assert needs_shown(page) == [escape(need) for need in needs]
