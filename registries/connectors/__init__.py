"""Connectors by registry kind: one dict, which also feeds Registry.kind's choices."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from registries.connectors.acr import AcrConnector
from registries.connectors.artifact_registry import ArtifactRegistryConnector
from registries.connectors.base import Connector, ConnectorConfig
from registries.connectors.distribution import DistributionConnector
from registries.connectors.dockerhub import DockerHubConnector
from registries.connectors.ecr import EcrConnector
from registries.connectors.errors import ConfigError
from registries.connectors.harbor import HarborConnector
from registries.connectors.quay import QuayConnector

CONNECTORS: dict[str, type[Connector]] = {
    c.kind: c
    for c in (
        AcrConnector,
        ArtifactRegistryConnector,
        DistributionConnector,
        DockerHubConnector,
        EcrConnector,
        HarborConnector,
        QuayConnector,
    )
}


def kind_choices() -> list[tuple[str, str]]:
    # Registry.kind gets this function, not its result: migrations store a reference,
    # so adding a kind needs no migration. Renaming the function does.
    return sorted((kind, connector.label) for kind, connector in CONNECTORS.items())


# The same choices as a value, for drf-spectacular's enum naming (it needs an importable object).
KIND_CHOICES = kind_choices()


def config_for(kind: str, public: dict[str, Any], secrets: dict[str, str]) -> ConnectorConfig:
    """Validate a registry's stored configuration; secrets are merged in only here."""
    if kind not in CONNECTORS:
        raise ConfigError(f"no connector for registry kind {kind!r}")
    try:
        return CONNECTORS[kind].config_class(**public, **secrets)
    except ValidationError as exc:
        raise ConfigError(_first_problem(exc)) from None


def build(kind: str, public: dict[str, Any], secrets: dict[str, str]) -> Connector:
    config = config_for(kind, public, secrets)
    return CONNECTORS[kind](config)  # type: ignore[call-arg]


def _first_problem(exc: ValidationError) -> str:
    # Name the field and the problem, never the value: it may be a secret.
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "configuration"
    return f"{where}: {error['msg']}"


def connector_class(kind: str, public: dict[str, Any], secrets: dict[str, str]) -> type[Connector] | None:
    """The class that will serve this registry, for questions about its capabilities without
    connecting: a kind may pick a narrower variant from its configuration (ACR with a token only)."""
    connector = CONNECTORS.get(kind)
    variant_for = getattr(connector, "variant_for", None)
    if connector is None or variant_for is None:
        return connector
    try:
        chosen: type[Connector] = variant_for(config_for(kind, public, secrets))
    except ConfigError:
        return connector
    return chosen
