"""Pages that update as people type, in Chromium: what the Django test client cannot show.

The test client posts a preview request by hand; only a browser shows whether htmx sends it at all
(a form with required fields, for one, holds htmx's request back until they are filled).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from django.test import Client

from accounts.models import User
from accounts.roles import Role
from tests import factories

if TYPE_CHECKING:
    from playwright.sync_api import Page
    from pytest_django.live_server_helper import LiveServer

pytestmark = pytest.mark.django_db(transaction=True)


def signed_in(page: Page, live_server: LiveServer, person: User) -> None:
    """Hand the browser a real session cookie: the sign-in flows have their own tests (test_sso.py)."""
    client = Client()
    client.force_login(person)
    cookie = client.cookies["sessionid"]
    page.context.add_cookies([{"name": "sessionid", "value": cookie.value, "url": live_server.url}])


def test_the_rule_preview_follows_the_form_before_it_is_complete(page: Page, live_server: LiveServer) -> None:
    registry = factories.registry()
    team = factories.group(display_name="Web developers")
    for _ in range(2):
        factories.member(factories.user(), team)
    for name in ("web/shop", "web/admin", "data/etl"):
        factories.repository(registry, name=name)
    signed_in(page, live_server, factories.user_with_role(Role.ADMIN))

    page.goto(f"{live_server.url}/access/rules/add/")
    page.select_option("select[name=group]", label="Web developers")
    page.check("input[value=push]")
    page.fill("input[name=pattern]", "web/*")  # the justification is still empty
    summary = page.locator(".preview-summary")
    summary.wait_for()
    assert "would let 2 people pull/push in 2 repositories" in summary.inner_text()

    page.fill("input[name=pattern]", "Web/*")
    alert = page.locator("#rule-preview [role=alert]")
    alert.wait_for()
    assert "lowercase" in alert.inner_text()
