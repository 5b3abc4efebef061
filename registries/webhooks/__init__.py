"""Registry notifications: parsers by format, each turning a request body into PushEvents."""

from __future__ import annotations

from collections.abc import Callable

from registries.webhooks import acr, artifact_registry, distribution, dockerhub, ecr, harbor, quay
from registries.webhooks.events import PushEvent

PARSERS: dict[str, Callable[[bytes], list[PushEvent]]] = {
    "acr": acr.parse,
    "distribution": distribution.parse,
    "gar": artifact_registry.parse,
    "dockerhub": dockerhub.parse,
    "harbor": harbor.parse,
    "ecr": ecr.parse,
    "quay": quay.parse,
}
