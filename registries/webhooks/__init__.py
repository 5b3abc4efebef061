"""Registry notifications: parsers by format, each turning a request body into PushEvents."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from registries.connectors.base import ConnectorConfig
from registries.webhooks import acr, artifact_registry, distribution, dockerhub, ecr, harbor, quay
from registries.webhooks.events import Origin, PushEvent

PARSERS: dict[str, Callable[[bytes], list[PushEvent]]] = {
    "acr": acr.parse,
    "distribution": distribution.parse,
    "gar": artifact_registry.parse,
    "dockerhub": dockerhub.parse,
    "harbor": harbor.parse,
    "ecr": ecr.parse,
    "quay": quay.parse,
}

# Kinds whose events say which account (project) and region (location) they happened in, and where
# the registry's own are: its config → that origin. Events of another origin are not the registry's.
ORIGINS: dict[str, Callable[[ConnectorConfig], Origin]] = {
    "gar": artifact_registry.origin,
    "ecr": ecr.origin,
}

# Kinds whose sender may prove itself with its own bearer token instead of the registry's secret:
# (token, the registry's config, the URLs this endpoint is reached by) → None, or TokenRefused.
TOKEN_VERIFIERS: dict[str, Callable[[str, ConnectorConfig, Sequence[str]], None]] = {
    "gar": artifact_registry.verify_token,  # Pub/Sub push authentication
}
