from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


class MalformedEvent(ValueError):
    """A notification body Customs cannot read; the message says what is wrong with it."""


class TokenRefused(Exception):
    """A bearer token that does not prove who sent the notification; the message says why."""


class TokenUncheckable(Exception):
    """A bearer token that cannot be checked now (its issuer's keys are out of reach): send it again."""


@dataclass(frozen=True)
class Origin:
    """Where a cloud registry says an event happened. One Pub/Sub topic carries a whole project's
    events and one EventBridge bus a whole account's, so an endpoint may hear of other registries."""

    account: str  # the Google project, or the AWS account
    region: str  # the Artifact Registry location, or the AWS region


@dataclass(frozen=True)
class PushEvent:
    """One registry event, whatever the registry's format: push, delete or pull of a manifest."""

    event_id: str
    action: str  # "push", "delete" or "pull"
    repository: str
    digest: str = ""
    tag: str = ""
    media_type: str = ""
    at: datetime | None = None
    origin: Origin | None = None  # None: the format does not say, so the event is taken as this registry's
