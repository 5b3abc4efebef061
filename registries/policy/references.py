"""Image references, parsed and normalised exactly as docker/distribution's reference package does.

`parse()` is `ParseNormalizedNamed`: a familiar name (`python:3.12`) becomes a fully qualified one
(`docker.io/library/python:3.12`); `with_default_tag()` is `TagNameOnly`. Docker, BuildKit,
containerd and Kubernetes admission tools all read references this way, so the policy must too: a
reference we normalised differently would be judged as an image nobody pulls. Input that
distribution rejects raises `InvalidReference` with the reason; nothing is guessed or repaired
(uppercase is never lowercased, a bad digest is never trimmed).

Sources: distribution/reference `normalize.go`, `reference.go`, `regexp.go` (v0.6, where the
255-character limit applies to the path only) and opencontainers/go-digest `digest.go`,
`algorithm.go` for digest validation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
LOCALHOST = "localhost"
PATH_LENGTH_MAX = 255

# Every host Docker Hub answers under, as references and registry endpoints name it: its registry
# (registry-1.docker.io, registry.hub.docker.com), the legacy index and the Hub API that a Docker
# Hub registry's endpoint names. distribution folds only index.docker.io into docker.io; for policy,
# pages and mirrors they are all one registry, or a banned image would pass under another host.
DOCKER_HUB_HOSTS = frozenset(
    {
        DEFAULT_DOMAIN,
        LEGACY_DEFAULT_DOMAIN,
        "registry-1.docker.io",
        "registry.hub.docker.com",
        "hub.docker.com",
    }
)

# The grammar of regexp.go, piece by piece. re.ASCII matters: Go's \w is ASCII-only, Python's is not.
_ALPHANUMERIC = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALPHANUMERIC}(?:{_SEPARATOR}{_ALPHANUMERIC})*"
_REMOTE_NAME = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6_ADDRESS = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_AND_PORT = rf"(?:{_DOMAIN_NAME}|{_IPV6_ADDRESS})(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}"
_NAME = rf"(?:{_DOMAIN_AND_PORT}/)?{_REMOTE_NAME}"

_REFERENCE = re.compile(rf"({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?", re.ASCII)
_ANCHORED_NAME = re.compile(rf"(?:({_DOMAIN_AND_PORT})/)?({_REMOTE_NAME})", re.ASCII)
_IDENTIFIER = re.compile(r"[a-f0-9]{64}", re.ASCII)

# go-digest's registered algorithms and the length of their lowercase hex encoding.
DIGEST_HEX_LENGTH = {"sha256": 64, "sha384": 96, "sha512": 128}


class InvalidReference(ValueError):
    """The text is not an image reference distribution would accept; the message says why."""


@dataclass(frozen=True)
class Reference:
    """A normalised reference: `docker.io/library/python:3.12@sha256:…` split into its parts."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def repository(self) -> str:
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        text = self.repository
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


def parse(text: str) -> Reference:
    """Normalise `text` as ParseNormalizedNamed does; no default tag is added."""
    if _IDENTIFIER.fullmatch(text):
        raise InvalidReference(f"{text!r} is a 64-character hexadecimal image ID, not a repository name")
    domain, remainder = _split_docker_domain(text)
    # As distribution does: everything before the first ":" must be lowercase, so an uppercase
    # repository is reported as such rather than as a generic format error.
    remote = remainder.split(":", 1)[0]
    if remote.lower() != remote:
        raise InvalidReference(f"{text!r}: the repository name must be lowercase")
    return _parse_qualified(f"{domain}/{remainder}", text)


def with_default_tag(reference: Reference) -> Reference:
    """Add ":latest" when neither a tag nor a digest is written (TagNameOnly)."""
    if reference.tag is None and reference.digest is None:
        return replace(reference, tag=DEFAULT_TAG)
    return reference


def registry_host(host: str) -> str:
    """A host as Customs compares hosts: lowercased (hosts are case-insensitive), Docker Hub's as
    docker.io. Ports stay: they are part of what a reference names."""
    lowered = host.lower()
    return DEFAULT_DOMAIN if lowered in DOCKER_HUB_HOSTS else lowered


def endpoint_host(url: str) -> str:
    """The host of a registry URL as references name it: `https://User@Reg.example:5000/x` is
    `reg.example:5000`, Docker Hub's endpoints docker.io. A bare host is taken as it is."""
    url = url.strip()
    host = urlsplit(url).netloc if "://" in url else url.split("/", 1)[0]
    return registry_host(host.rsplit("@", 1)[-1])


def on_docker_hub(reference: Reference) -> Reference:
    """The reference as docker.io names it when it names Docker Hub under another host:
    `registry-1.docker.io/centos:7` is `docker.io/library/centos:7`. Other references are unchanged."""
    if reference.domain == DEFAULT_DOMAIN or reference.domain.lower() not in DOCKER_HUB_HOSTS:
        return reference
    path = reference.path if "/" in reference.path else f"{OFFICIAL_REPO_PREFIX}{reference.path}"
    return replace(reference, domain=DEFAULT_DOMAIN, path=path)


def _split_docker_domain(name: str) -> tuple[str, str]:
    """The registry and the rest, as splitDockerDomain decides them."""
    first, slash, rest = name.partition("/")
    if not slash:
        # One component is always a Docker Hub official image, even "localhost" or "example.com"
        # (distribution keeps this for compatibility; its source marks it FIXME).
        return DEFAULT_DOMAIN, OFFICIAL_REPO_PREFIX + name
    if first == LOCALHOST or "." in first or ":" in first or first.lower() != first:
        # A registry: localhost, a dotted name or IP, a port, or (namespaces being lowercase) any
        # first component with an uppercase letter. Hosts keep their case as written.
        domain, remote = first, rest
    else:
        domain, remote = DEFAULT_DOMAIN, name
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remote:
        remote = OFFICIAL_REPO_PREFIX + remote
    return domain, remote


def _parse_qualified(qualified: str, written: str) -> Reference:
    """Parse "domain/remainder" against the reference grammar (distribution's Parse)."""
    match = _REFERENCE.fullmatch(qualified)
    if match is None:
        lowered = qualified.lower()
        if lowered != qualified and _REFERENCE.fullmatch(lowered):
            raise InvalidReference(f"{written!r}: the repository name must be lowercase")
        raise InvalidReference(f"{written!r} is not a valid image reference")
    name, tag, digest = match.groups()
    name_match = _ANCHORED_NAME.fullmatch(name)
    assert name_match is not None  # the reference grammar embeds the name grammar
    domain, path = name_match.group(1), name_match.group(2)
    if len(path) > PATH_LENGTH_MAX:
        raise InvalidReference(f"{written!r}: repository path is longer than {PATH_LENGTH_MAX} characters")
    if digest is not None:
        _check_digest(digest, written)
    if domain is None:
        # The first component was taken as a registry (it has a "." or ":") but is not a valid host,
        # e.g. "foo_bar.com/app". Distribution then returns a name with no registry at all, which no
        # client can pull from; refuse it instead of guessing where it would come from.
        host = written.split("/", 1)[0]
        raise InvalidReference(f"{written!r}: {host!r} is read as a registry host but is not a valid one")
    return Reference(domain=domain, path=path, tag=tag, digest=digest)


def _check_digest(digest: str, written: str) -> None:
    """go-digest's Validate: a registered algorithm and its exact lowercase hex length."""
    algorithm, _, encoded = digest.partition(":")
    length = DIGEST_HEX_LENGTH.get(algorithm)
    if length is None:
        raise InvalidReference(
            f"{written!r}: unsupported digest algorithm {algorithm!r} (sha256, sha384 or sha512)"
        )
    if len(encoded) != length or not re.fullmatch(r"[a-f0-9]+", encoded, re.ASCII):
        raise InvalidReference(
            f"{written!r}: a {algorithm} digest is exactly {length} lowercase hexadecimal characters"
        )
