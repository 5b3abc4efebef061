"""Reading the inventory for people: where an artifact is held, its platforms, how to pull it.

Shared by the pages and the API so both say the same thing about the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from registries.models import Artifact, Registry, Replica


@dataclass(frozen=True)
class RegionState:
    region: str
    endpoint: str
    primary: bool
    state: str  # "holds", "missing" (lags behind the primary) or "unknown" (replica never synced)


def region_states(registry: Registry, replicas: list[Replica], held: set[int]) -> list[RegionState]:
    """Where an artifact is: the primary holds everything sync listed; replicas by their presence rows."""
    states = [RegionState(registry.region or "primary", registry.endpoint, True, "holds")]
    for replica in replicas:
        # Only a replica that has finished a sync can be said to lack something.
        lacking = "missing" if replica.last_sync_at else "unknown"
        states.append(
            RegionState(replica.region, replica.endpoint, False, "holds" if replica.pk in held else lacking)
        )
    return states


def platforms_of(artifact: Artifact) -> list[str]:
    """An index's platforms (from its platform manifests, prefetched by the caller), or the image's own."""
    children = list(artifact.platforms.all())
    if children:
        return sorted(child.platform for child in children if child.platform)
    return [artifact.platform] if artifact.platform else []


def pull_host(endpoint: str) -> str:
    """The host part of a pull reference: the endpoint without its scheme (and trailing slash)."""
    return endpoint.split("://", 1)[-1].rstrip("/")


def pull_reference(artifact: Artifact) -> str:
    """`<host>/<repository>@<digest>`: pulls exactly this content, whatever happens to the tags."""
    repository = artifact.repository
    return f"{pull_host(repository.registry.endpoint)}/{repository.name}@{artifact.digest}"
