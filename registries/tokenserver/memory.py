"""The token server's memory of recent decisions, emptied the moment PostgreSQL says anything changed.

A CI fleet asks for a registry token on every pull, and most asks repeat one a few seconds old.
Each web process remembers, for a token's lookup prefix, the token and its owner (or robot), and
for a principal on a registry, the rules in force; a repeat then costs no database round trip.

Forgetting is what makes this safe. Migration registries 0009 puts statement-level triggers on
every table a decision rests on (tokens, people, memberships, groups, role bindings, rules,
registries, signing keys); they NOTIFY `customs_access` on commit, whatever wrote (services, bulk
updates, cascades, psql). One thread per process LISTENs and empties the memory at each notice,
so a revoked token, a departed person or a removed membership is refused within milliseconds of
the commit. Without a listening connection (SQLite, the listener reconnecting, or
CUSTOMS_REGISTRY_TOKEN_CACHE_SECONDS=0) nothing is remembered and every request reads the database.

Time alone also ends a memory: never later than the setting's seconds, a token's expiry, or the
earliest expiry of the rules it holds, since a rule expiring changes nothing in the database.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from django.conf import settings
from django.db import connection
from django.utils import timezone

logger = logging.getLogger(__name__)

CHANNEL = "customs_access"
RECONNECT_SECONDS = 2.0
MAX_ENTRIES = 50_000  # per process; past this the memory starts again rather than grow

T = TypeVar("T")


@dataclass(frozen=True)
class _Entry:
    value: Any
    until: float  # monotonic


class AccessMemory:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[Any, ...], _Entry] = {}
        self._generation = 0
        self._listening = False
        self._pid: int | None = None
        self._thread: threading.Thread | None = None

    # --- reading and remembering ------------------------------------------------------------------

    def recall(
        self, key: tuple[Any, ...], load: Callable[[], T], *, until: Callable[[T], datetime | None]
    ) -> T:
        """The remembered value for key, or load() remembered until the earliest of the setting's
        lifetime and until(value) (a token's or a rule's expiry; None: no such limit). None, the
        answer for an unknown token, is never remembered: guessing secrets must not fill memory."""
        if not self.active():
            return load()
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            generation = self._generation
        if entry is not None and entry.until > now:
            return entry.value  # type: ignore[no-any-return]
        value = load()
        if value is None:
            return value
        lifetime = float(settings.REGISTRY_TOKEN_CACHE_SECONDS)
        limit = until(value)
        if limit is not None:
            lifetime = min(lifetime, (limit - timezone.now()).total_seconds())
        with self._lock:
            # A change noticed while loading means the value may predate it: use it once, keep nothing.
            if lifetime > 0 and generation == self._generation:
                if len(self._entries) >= MAX_ENTRIES:
                    self._entries.clear()
                self._entries[key] = _Entry(value, now + lifetime)
        return value

    def forget_all(self) -> None:
        with self._lock:
            self._entries.clear()
            self._generation += 1

    @property
    def generation(self) -> int:
        return self._generation

    # --- the listener -------------------------------------------------------------------------

    def active(self) -> bool:
        """Whether remembering is allowed now: enabled, on PostgreSQL, and a listener is connected."""
        if settings.REGISTRY_TOKEN_CACHE_SECONDS <= 0 or connection.vendor != "postgresql":
            return False
        if self._pid != os.getpid():
            self._start()  # first use in this process, or a fresh worker forked from a parent that had one
        return self._listening

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._listening = False
            self._entries.clear()
        # Django's own connection settings, without the parts only Django's cursors understand.
        params = {
            key: value
            for key, value in connection.get_connection_params().items()
            if key not in ("cursor_factory", "context", "prepare_threshold")
        }
        threading.Thread(
            target=self._listen, args=(params,), name="customs-access-listener", daemon=True
        ).start()

    def _listen(self, params: dict[str, Any]) -> None:
        import psycopg

        pid = os.getpid()
        while self._pid == pid:
            try:
                with psycopg.connect(**params, autocommit=True) as listener:
                    listener.execute(f"LISTEN {CHANNEL}")
                    # Anything may have changed while nobody listened: start from nothing.
                    self.forget_all()
                    self._listening = True
                    # Wakes at least every second, so stop() is heard without closing from outside.
                    while self._pid == pid:
                        for _ in listener.notifies(timeout=1.0):
                            self.forget_all()
            except Exception:  # noqa: BLE001  (any failure: stop remembering, then try again)
                logger.warning(
                    "token server: lost the access-change listener; remembering nothing until back"
                )
            self._listening = False
            self.forget_all()
            if self._pid == pid:
                time.sleep(RECONNECT_SECONDS)

    def stop(self) -> None:
        """End this process's listener and forget everything (tests, before their database is dropped)."""
        thread, self._pid = self._thread, None
        if thread is not None:
            thread.join(timeout=5)
        self._thread, self._listening = None, False
        self.forget_all()

    def wait_until_listening(self, timeout: float = 5.0) -> bool:
        """For tests and start-up checks: True once the listener is connected."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.active():
                return True
            time.sleep(0.02)
        return False


MEMORY = AccessMemory()
