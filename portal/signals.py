"""Carry the request id from the request that queued a task into the worker's log lines."""

from __future__ import annotations

from typing import Any

from celery.signals import before_task_publish, task_prerun

from portal import requestid


@before_task_publish.connect
def _attach_request_id(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is not None and requestid.current() != "-":
        headers["customs_request_id"] = requestid.current()


@task_prerun.connect
def _adopt_request_id(task: Any = None, **_: Any) -> None:
    offered = getattr(task.request, "customs_request_id", None) if task else None
    requestid.set_current(requestid.accept_or_new(offered))
