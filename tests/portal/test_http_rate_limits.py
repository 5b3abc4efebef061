"""Outbound sessions wait out a short 429 only where a caller said it can afford to wait."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from email.utils import format_datetime

import pytest
import responses
from django.utils import timezone

from portal.http import RateLimitWaits, outbound_session, retry_after, waiting_out_rate_limits

URL = "https://registry.example.test/v2/_catalog"


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as mock:
        yield mock


def throttled(mock: responses.RequestsMock, *headers: dict[str, str]) -> None:
    for header in headers:
        mock.get(URL, status=429, headers=header)
    mock.get(URL, json={"repositories": []})


def test_without_a_waiting_caller_a_429_comes_straight_back(mocked: responses.RequestsMock) -> None:
    mocked.get(URL, status=429, headers={"Retry-After": "1"})
    assert outbound_session(purpose="test").get(URL).status_code == 429
    assert len(mocked.calls) == 1


def test_a_waiting_caller_waits_as_asked_and_gets_the_answer(mocked: responses.RequestsMock) -> None:
    throttled(mocked, {"Retry-After": "3"}, {"Retry-After": "1"})
    waits: list[float] = []
    with waiting_out_rate_limits(RateLimitWaits(longest=60, attempts=4, sleep=waits.append)):
        response = outbound_session(purpose="test").get(URL)
    assert response.status_code == 200
    assert waits == [3.0, 1.0]
    assert len(mocked.calls) == 3


def test_a_wait_longer_than_the_caller_allows_is_not_waited(mocked: responses.RequestsMock) -> None:
    mocked.get(URL, status=429, headers={"Retry-After": "61"})
    waits: list[float] = []
    with waiting_out_rate_limits(RateLimitWaits(longest=60, attempts=4, sleep=waits.append)):
        response = outbound_session(purpose="test").get(URL)
    assert (response.status_code, waits, len(mocked.calls)) == (429, [], 1)


def test_attempts_are_bounded(mocked: responses.RequestsMock) -> None:
    for _ in range(3):
        mocked.get(URL, status=429)
    waits: list[float] = []
    with waiting_out_rate_limits(RateLimitWaits(longest=60, attempts=3, sleep=waits.append)):
        response = outbound_session(purpose="test").get(URL)
    assert (response.status_code, waits, len(mocked.calls)) == (429, [1.0, 2.0], 3)


def test_the_wait_ends_with_the_block(mocked: responses.RequestsMock) -> None:
    mocked.get(URL, status=429, headers={"Retry-After": "1"})
    with waiting_out_rate_limits(RateLimitWaits(longest=60, attempts=4, sleep=lambda seconds: None)):
        pass
    assert outbound_session(purpose="test").get(URL).status_code == 429


@pytest.mark.parametrize(
    ("headers", "low", "high"),
    [
        ({"Retry-After": "120"}, 120, 120),
        ({"Retry-After": "soon"}, None, None),
        ({"X-Retry-After": "<in 30 s>"}, 28, 30),  # older Docker Hub: an epoch
        ({"Retry-After": "<date in 30 s>"}, 28, 30),
        ({"Retry-After": "7", "X-Retry-After": "<in 30 s>"}, 7, 7),  # the standard header wins
        ({}, None, None),
    ],
)
def test_retry_after_reads_seconds_dates_and_docker_hubs_epoch(
    headers: dict[str, str], low: float | None, high: float | None
) -> None:
    epoch = str(int(time.time()) + 30)
    date = format_datetime(timezone.now() + timedelta(seconds=30), usegmt=True)
    filled = {k: v.replace("<in 30 s>", epoch).replace("<date in 30 s>", date) for k, v in headers.items()}
    seconds = retry_after(filled)
    if low is None:
        assert seconds is None
    else:
        assert seconds is not None
        assert low <= seconds <= (high or low)
