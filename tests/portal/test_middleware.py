from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import User

pytestmark = pytest.mark.django_db


def test_pages_send_anonymous_visitors_to_sign_in_with_their_destination(client: Client) -> None:
    response = client.get("/audit/?actor=alice")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/audit/%3Factor%3Dalice"


def test_unknown_paths_reveal_nothing_to_anonymous_visitors(client: Client) -> None:
    assert client.get("/no-such-page/").status_code == 302


@pytest.mark.parametrize("status", [User.Status.DISABLED, User.Status.DEPARTED])
def test_a_session_ends_once_the_person_is_no_longer_active(
    client: Client, developer: User, status: str
) -> None:
    client.force_login(developer)
    assert client.get("/settings/").status_code == 200
    User.objects.filter(pk=developer.pk).update(status=status)
    response = client.get("/settings/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert "_auth_user_id" not in client.session


def test_the_menu_shows_each_role_only_the_pages_it_opens(
    client: Client, developer: User, reviewer: User
) -> None:
    client.force_login(developer)
    menu = client.get("/").content.decode().split('aria-label="Main"', 1)[1].split("</nav>", 1)[0]
    assert ">Repositories</a>" in menu
    assert ">Audit</a>" not in menu
    client.force_login(reviewer)
    menu = client.get("/").content.decode().split('aria-label="Main"', 1)[1].split("</nav>", 1)[0]
    assert ">Audit</a>" in menu
    assert 'aria-current="page">Dashboard</a>' in menu
