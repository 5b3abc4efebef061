"""Customs' own tokens reach the credential list soon after they change, not at the next hourly scan.

`accounts` must not import `registries`, so registries listens: RegistriesConfig.ready() connects
these handlers to the token models and to the audit trail.
"""

from __future__ import annotations

import threading
from time import monotonic
from typing import Any

from django.db import transaction

from portal.audit import AuditAction
from portal.models import AuditEvent
from registries import tasks

# A copy re-reads every token, access rule and membership and rewrites every Customs row of the
# list: seconds with tens of thousands of tokens. So it runs on a worker, a few seconds after the
# first change; later changes within COALESCE seconds ride on that copy, which has not started yet.
# The second between them leaves room for the worker's clock to run ahead of this host's.
COPY_DELAY = 3.0
COALESCE = 2.0

# Revoking is a queryset update, which sends no post_save: the audit event is the signal.
# Disabling or departing a person revokes all their personal tokens at once.
REVOKING_ACTIONS = frozenset(
    {
        AuditAction.TOKEN_REVOKED,
        AuditAction.ROBOT_TOKEN_REVOKED,
        AuditAction.USER_DISABLED,
        AuditAction.USER_DEPARTED,
    }
)


class Pending:
    """When this process last queued a copy. Per process: N web processes queue at most N per window."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queued_at = float("-inf")

    def claim(self) -> bool:
        """True when no copy queued by this process is still waiting to start."""
        with self._lock:
            now = monotonic()
            if now - self._queued_at < COALESCE:
                return False
            self._queued_at = now
            return True


PENDING = Pending()


def token_changed(**_: Any) -> None:
    """post_save and post_delete of a PersonalToken or RobotToken."""
    # robust: the token is committed whatever the broker does; the hourly scan copies it anyway.
    transaction.on_commit(queue_copy, robust=True)


def event_recorded(instance: AuditEvent, created: bool, **_: Any) -> None:
    """post_save of an AuditEvent: a revocation changes a token without saving it."""
    if created and instance.action in REVOKING_ACTIONS:
        transaction.on_commit(queue_copy, robust=True)


def queue_copy() -> None:
    if PENDING.claim():
        tasks.copy_customs_tokens.apply_async(countdown=COPY_DELAY)
