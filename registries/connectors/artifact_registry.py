"""Google Artifact Registry (and gcr.io, which now lives in it): inventory, IAM grants, service-account keys.

One Customs registry is one project in one location (a region such as `europe-west1`, or a
multi-region `us`, `europe`, `asia`); its docker host is `https://<location>-docker.pkg.dev`. A
Customs repository is an image path inside an Artifact Registry repository, named
`<repository>/<image path>` (`images/team/app`), because Artifact Registry's own repository holds
many image paths and is also the unit its IAM policies attach to: a grant there has the scope
`<repository>/**`. gcr.io hosts are Artifact Registry repositories named after the host
(registry-apis.md §7); their images are `gcr.io/<image path>` here and are read from the gcr.io host.

Authentication is a service-account JSON key. google-auth signs a JWT with it and trades it at the
key's own `token_uri` for an OAuth access token, which calls the REST APIs as a bearer and the
docker host as the password of the user `oauth2accesstoken` (manifests come through the distribution
connector, so digests are checked as everywhere else). Images, tags and push times come from the
REST API's `dockerImages` listing (`uploadTime`, or `updateTime` when a tag came later; Artifact
Registry keeps no pull time). An image on a gcr.io host that the REST API has no record of gets its
times from gcr.io's own `tags/list` extension, where the host still sends it (§7.7). Wire shapes
follow registry-apis.md §7: int64 values are JSON strings, times RFC 3339.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote

import requests
from google.auth import exceptions as google_exceptions
from google.auth.transport.requests import Request as GoogleRequest
from google.oauth2 import service_account
from pydantic import Field, SecretStr, field_validator, model_validator

from portal.http import OutboundSession, TransientError, outbound_session, retry_after
from registries.connectors.base import (
    ACTIONS,
    AccessPlan,
    Capability,
    ConnectorConfig,
    CredentialKind,
    GrantChange,
    PermissionCheck,
    PostureCheck,
    PostureFact,
    PostureState,
    Principal,
    PrincipalKind,
    RemoteArtifact,
    RemoteCredential,
    RemoteGrant,
    RemoteReplication,
    RemoteRepository,
    RemoteTag,
    ReplicationKind,
    http_url,
    parse_rfc3339,
)
from registries.connectors.distribution import DistributionConfig, DistributionConnector
from registries.connectors.errors import (
    AuthError,
    ConfigError,
    ConnectorError,
    NotFoundError,
    PermanentError,
    RateLimited,
    json_object,
)

API = "https://artifactregistry.googleapis.com"
IAM = "https://iam.googleapis.com"
RESOURCE_MANAGER = "https://cloudresourcemanager.googleapis.com"
# Where Google publishes the keys that sign ID tokens, such as those Pub/Sub push subscriptions send.
GOOGLE_ID_TOKEN_CERTS = "https://www.googleapis.com/oauth2/v1/certs"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
DOCKER_USER = "oauth2accesstoken"  # the docker host takes the access token as this user's password
GCR_HOSTS = frozenset({"gcr.io", "us.gcr.io", "eu.gcr.io", "asia.gcr.io"})
# A key "valid before" this year has no expiry: Google writes 9999-12-31 for keys made without one.
NEVER_YEAR = 9999
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_MS = re.compile(r"[0-9]{1,15}")  # 15 digits reach past the year 9999: anything longer is not a time

PULL, PUSH, DELETE = frozenset({"pull"}), frozenset({"pull", "push"}), frozenset(ACTIONS)
# Predefined roles as Customs' actions (registry-apis.md §7.2). Custom roles are not read (that needs
# the role's definition), so access through them does not show up as a grant.
ROLE_ACTIONS: dict[str, frozenset[str]] = {
    "roles/artifactregistry.reader": PULL,
    "roles/artifactregistry.writer": PUSH,
    "roles/artifactregistry.createOnPushWriter": PUSH,
    "roles/artifactregistry.repoAdmin": DELETE,
    "roles/artifactregistry.createOnPushRepoAdmin": DELETE,
    "roles/artifactregistry.admin": DELETE,
    # Basic roles, granted on the project, reach every repository in it.
    "roles/viewer": PULL,
    "roles/editor": DELETE,
    "roles/owner": DELETE,
}
# What a plan may bind, smallest first: Artifact Registry has no push-only or delete-only role.
GRANTABLE = (
    ("roles/artifactregistry.reader", PULL),
    ("roles/artifactregistry.writer", PUSH),
    ("roles/artifactregistry.repoAdmin", DELETE),
)
# Roles that give far more than registry access: Customs reports them but never edits them.
NOT_EDITED = frozenset({"roles/owner", "roles/editor", "roles/viewer"})
_SOURCE = re.compile(r"^(?P<where>repository (?P<repo>\S+)|project \S+): (?P<role>\S+)(?: if (?P<cond>.+))?$")
_KEY_NAME = re.compile(r"^projects/[^/]+/serviceAccounts/[^/]+/keys/[^/:]+$")
# IAM members that are not people or workloads of the organisation (registry-apis.md §7.2).
EVERYONE = {"allUsers": "anyone on the internet", "allAuthenticatedUsers": "any Google account"}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]+$")
# The optional writes, each proved with testIamPermissions (which changes nothing) where it applies.
SET_REPOSITORY_POLICY = "artifactregistry.repositories.setIamPolicy"
SET_PROJECT_POLICY = "resourcemanager.projects.setIamPolicy"
DISABLE_KEYS = "iam.serviceAccountKeys.disable"


class ArtifactRegistryConfig(ConnectorConfig):
    url: str = ""  # the docker host; empty: https://<location>-docker.pkg.dev
    project: str
    location: str
    service_account_key: SecretStr
    api_url: str = API
    iam_url: str = IAM
    resource_manager_url: str = RESOURCE_MANAGER
    gcr_url: str = "https://{host}"  # where a gcr.io repository serves /v2 ({host}: gcr.io, eu.gcr.io, ...)
    read_project_policy: bool = True
    directory_uses_emails: bool = False
    page_size: int = 100
    push_service_account: str | None = Field(
        default=None,
        description="The service account a Pub/Sub push subscription with authentication signs its "
        "deliveries as; its ID tokens are then accepted as well as the secret in the URL.",
    )
    push_audience: str | None = Field(
        default=None,
        description="The audience that subscription sets; empty: the notification URL (Pub/Sub's default).",
    )
    push_certs_url: str = GOOGLE_ID_TOKEN_CERTS  # Google's ID-token signing keys; tests serve their own

    @field_validator("api_url", "iam_url", "resource_manager_url", "gcr_url", "push_certs_url")
    @classmethod
    def _urls(cls, value: str) -> str:
        return http_url(value)

    @field_validator("project", "location")
    @classmethod
    def _name(cls, value: str) -> str:
        value = value.strip()
        if not re.fullmatch(r"[a-z][a-z0-9.:-]*", value):
            raise ValueError("use the id as Google writes it, e.g. acme-prod or europe-west1")
        return value

    @field_validator("push_service_account")
    @classmethod
    def _push_account(cls, value: str | None) -> str | None:
        value = (value or "").strip().lower()  # Google writes service-account emails in lower case
        if value and not _EMAIL.match(value):
            raise ValueError(
                "use the service account's email, e.g. pubsub-push@acme-prod.iam.gserviceaccount.com"
            )
        return value or None

    @field_validator("push_audience")
    @classmethod
    def _push_audience(cls, value: str | None) -> str | None:
        return (value or "").strip() or None

    @field_validator("service_account_key")
    @classmethod
    def _key(cls, value: SecretStr) -> SecretStr:
        # Never echo the value: it holds a private key.
        try:
            info = json.loads(value.get_secret_value())
        except ValueError:
            raise ValueError("paste the service account's JSON key file as it was downloaded") from None
        missing = {"type", "client_email", "private_key", "token_uri"} - set(
            info if isinstance(info, dict) else {}
        )
        if missing or info.get("type") != "service_account":
            raise ValueError(
                "this is not a service-account key file (type service_account, with a private key)"
            )
        return value

    @field_validator("page_size")
    @classmethod
    def _page_size(cls, value: int) -> int:
        if not 1 <= value <= 1000:  # Artifact Registry caps pageSize at 1000
            raise ValueError("page size must be between 1 and 1000")
        return value

    @model_validator(mode="after")
    def _docker_host(self) -> ArtifactRegistryConfig:
        url = self.url or f"https://{self.location}-docker.pkg.dev"
        object.__setattr__(self, "url", http_url(url))
        return self

    def key_info(self) -> dict[str, Any]:
        info: dict[str, Any] = json.loads(self.service_account_key.get_secret_value())
        return info

    @property
    def docker_project(self) -> str:
        """The project as docker paths name it: a domain-scoped `example.com:tools` is `example.com/tools`."""
        return self.project.replace(":", "/")


@dataclasses.dataclass(frozen=True)
class _Image:
    """One DockerImage of the listing: an image path's digest with its tags and times."""

    path: str
    digest: str
    tags: tuple[str, ...]
    uploaded: datetime | None
    updated: datetime | None
    built: datetime | None

    @property
    def pushed(self) -> datetime | None:
        """When the image last arrived under a tag. A tag added to or moved onto an image after its
        upload moves updateTime, and Customs counts a tag push onto a known image as a push everywhere
        (ACR's tag times, notifications). Google does not say what else moves updateTime: taking a
        tag off may, and would then read as a push too."""
        times = [moment for moment in (self.uploaded, self.updated) if moment is not None]
        return max(times, default=None)


@dataclasses.dataclass(frozen=True)
class _LegacyTimes:
    """What gcr.io's tags/list extension says of one digest (registry-apis.md §7.7)."""

    created: datetime | None
    uploaded: datetime | None


_NO_LEGACY_TIMES = _LegacyTimes(None, None)


@dataclasses.dataclass(frozen=True)
class _Binding:
    resource: str  # "repository images" or "project acme-prod"
    role: str
    member: str
    condition: str  # the condition's title (or expression); "" for none


class ArtifactRegistryConnector:
    kind: ClassVar[str] = "gar"
    label: ClassVar[str] = "Google Artifact Registry (and gcr.io)"
    config_class: ClassVar[type[ConnectorConfig]] = ArtifactRegistryConfig
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.REPOSITORIES,
            Capability.ARTIFACTS,
            Capability.PUSHED_AT,
            Capability.CREDENTIALS,
            Capability.GRANTS,
            Capability.WRITE_GRANTS,
            Capability.DISABLE_CREDENTIALS,
            Capability.REPLICAS,
            Capability.EVENTS,
            Capability.POSTURE,
        }
    )
    # Least privilege: roles/artifactregistry.reader and roles/iam.securityReviewer on the project give
    # every read (or one custom role with exactly these permissions); the writes are optional.
    needs: ClassVar[tuple[str, ...]] = (
        "list repositories and images, and pull: roles/artifactregistry.reader on the project",
        "read each repository's IAM policy: artifactregistry.repositories.getIamPolicy "
        "(in roles/iam.securityReviewer on the project, or a custom role)",
        "read the project's IAM policy: resourcemanager.projects.getIamPolicy "
        "(in roles/iam.securityReviewer), unless project-wide grants are turned off",
        "list the keys of service accounts named in those policies: iam.serviceAccountKeys.list and "
        "iam.serviceAccountKeys.get (in roles/iam.securityReviewer, or a custom role with just these two)",
        f"optional, only for reconcile plans: {SET_REPOSITORY_POLICY} on the repositories "
        "(a custom role; roles/artifactregistry.admin also gives it, with far more)",
        f"optional, only for reconcile plans that remove project-wide bindings: {SET_PROJECT_POLICY} "
        "(it can change any access to the project: without it, remove those bindings in the console)",
        f"optional, only for offboarding and plans that disable keys: {DISABLE_KEYS} on the project "
        "(roles/iam.serviceAccountKeyAdmin, or a custom role)",
    )

    def __init__(self, config: ArtifactRegistryConfig) -> None:
        self.config = config
        self._local = threading.local()
        self._token_lock = threading.Lock()
        self._credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            config.key_info(), scopes=[SCOPE]
        )
        self._images: dict[str, list[_Image]] = {}  # Artifact Registry repository → its images
        self._registries: dict[tuple[str, str], DistributionConnector] = {}
        self._repo_ids: list[str] | None = None
        self._legacy: dict[tuple[str, str], dict[str, _LegacyTimes]] = {}  # (host, path) → digest → times

    # --- inventory -------------------------------------------------------------------------------

    def check(self) -> None:
        self._get(f"{self._parent}/repositories", params={"pageSize": 1})
        self._registry(self.config.url).check()

    def repositories(self) -> Iterator[RemoteRepository]:
        for repo in self._repository_ids():
            for path in sorted({image.path for image in self._list_images(repo)}):
                yield RemoteRepository(name=f"{repo}/{path}")

    def tags(self, repository: str) -> list[RemoteTag]:
        repo, path = _split(repository)
        images = self._images.get(repo) or self._list_images(repo)
        tags = [RemoteTag(tag, i.digest) for i in images if i.path == path for tag in i.tags]
        return sorted(tags, key=lambda tag: tag.name)

    def resolve(self, repository: str, reference: str) -> str:
        host, path = self._docker_path(repository)
        return self._registry(host).resolve(path, reference)

    def artifact(self, repository: str, digest: str) -> RemoteArtifact:
        host, path = self._docker_path(repository)
        record = self._registry(host).artifact(path, digest)
        image = self._image(repository, digest)
        if image is not None:
            return dataclasses.replace(record, pushed_at=image.pushed, created=record.created or image.built)
        legacy = _NO_LEGACY_TIMES
        if _split(repository)[0] in GCR_HOSTS:
            legacy = self._legacy_times(host, path).get(digest, _NO_LEGACY_TIMES)
        return dataclasses.replace(
            record, pushed_at=legacy.uploaded, created=record.created or legacy.created
        )

    def _repository_ids(self) -> list[str]:
        if self._repo_ids is None:
            self._repo_ids = sorted(self._docker_repositories())
        return self._repo_ids

    def _docker_repositories(self) -> dict[str, dict[str, Any]]:
        """Repository id → the listing's item, docker repositories only. Virtual ones are left out:
        they only point at others and store nothing of their own (listing them would count twice)."""
        return {
            str(item["name"]).rsplit("/", 1)[-1]: item
            for item in self._pages(f"{self._parent}/repositories", "repositories")
            if item.get("format") == "DOCKER" and item.get("mode") != "VIRTUAL_REPOSITORY"
        }

    def _list_images(self, repo: str) -> list[_Image]:
        url = f"{self._parent}/repositories/{quote(repo, safe='')}/dockerImages"
        images = [_image(item) for item in self._pages(url, "dockerImages")]
        self._images[repo] = images
        return images

    def _image(self, repository: str, digest: str) -> _Image | None:
        repo, path = _split(repository)
        known = next((i for i in self._images.get(repo, []) if i.path == path and i.digest == digest), None)
        if known is not None:
            return known
        # Not listed in this run (a notification): ask for the one image; its name encodes the path.
        name = quote(f"{path}@{digest}", safe="@:")
        try:
            return _image(
                self._get(f"{self._parent}/repositories/{quote(repo, safe='')}/dockerImages/{name}")
            )
        except NotFoundError:
            return None

    def _legacy_times(self, host: str, path: str) -> dict[str, _LegacyTimes]:
        """Digest → times from the gcr.io host's tags/list extension, read once per image path; empty
        when the host answers without it (whether Artifact Registry keeps it is unverified, §7.7)."""
        if (host, path) not in self._legacy:
            try:
                body = self._registry(host).tag_list(path)
            except PermanentError:
                body = {}  # a fallback only: no times is what the caller had without it
            self._legacy[host, path] = _legacy_manifest_times(body)
        return self._legacy[host, path]

    def _docker_path(self, repository: str) -> tuple[str, str]:
        """(docker host, path under /v2/) of a Customs repository name."""
        repo, path = _split(repository)
        if repo in GCR_HOSTS:  # gcr.io/<project>/<path>, with no repository segment
            return self.config.gcr_url.format(host=repo), f"{self.config.docker_project}/{path}"
        return self.config.url, f"{self.config.docker_project}/{repo}/{path}"

    def _registry(self, host: str) -> DistributionConnector:
        token = self._access_token()
        # Rebuilt when the access token is renewed: it is the docker password.
        if (host, token) not in self._registries:
            self._registries[host, token] = DistributionConnector(
                DistributionConfig(url=host, username=DOCKER_USER, password=SecretStr(token))
            )
        return self._registries[host, token]

    # --- regions -----------------------------------------------------------------------------------

    def read_replication(self) -> Iterator[RemoteReplication]:
        """Each docker repository's location. Artifact Registry has no replicas: a multi-region
        location (us, europe, asia) is Google's own redundancy, reported in the location's name."""
        for repo, item in self._docker_repositories().items():
            gcr = repo in GCR_HOSTS
            url = (
                f"{self.config.gcr_url.format(host=repo)}/{self.config.docker_project}"
                if gcr
                else f"{self.config.url}/{self.config.docker_project}/{repo}"
            )
            yield RemoteReplication(
                id=str(item["name"]),
                name=repo,
                kind=ReplicationKind.REGION,
                location=self.config.location,
                url=url,
                notes="remote repository: a cache of another registry"
                if item.get("mode") == "REMOTE_REPOSITORY"
                else "",
            )

    # --- posture ---------------------------------------------------------------------------------

    def read_posture(self, production: Collection[str] = ()) -> Iterator[PostureFact]:
        """Per docker repository: IAM bindings open to everyone, vulnerability scanning and (where a
        production image path lies) immutable tags; the project's policy for registry-wide access."""
        repositories = self._docker_repositories()
        for repo, item in sorted(repositories.items()):
            url = self._repository_url(repo)
            policy = self._get(f"{url}:getIamPolicy", params=_V3)
            yield _everyone_fact(
                PostureCheck.PUBLIC_REPOSITORY, f"repository {repo}", policy, f"{repo}/**", url
            )
            yield _scanning_fact(repo, item, url)
        for repository in sorted(production):
            repo = _split(repository)[0]
            if repo in repositories:
                yield _immutable_tags_fact(repository, repositories[repo], self._repository_url(repo))
        if not self.config.read_project_policy:
            evidence = "the project's IAM policy is not read (project-wide grants are turned off)"
            yield PostureFact(PostureCheck.ANONYMOUS_PULL, PostureState.UNKNOWN, evidence)
            return
        try:
            project = self._project_policy()
        except AuthError as exc:
            yield PostureFact(
                PostureCheck.ANONYMOUS_PULL, PostureState.UNKNOWN, str(exc), "", self._project_url
            )
            return
        yield _everyone_fact(
            PostureCheck.ANONYMOUS_PULL, f"project {self.config.project}", project, "", self._project_url
        )

    # --- grants ----------------------------------------------------------------------------------

    def read_grants(self) -> Iterator[RemoteGrant]:
        for binding in self._bindings():
            actions = ROLE_ACTIONS.get(binding.role)
            if actions is None:
                continue  # custom and unrelated roles: nothing Customs can compare
            repo = binding.resource.removeprefix("repository ")
            yield RemoteGrant(
                principal=self._principal(binding.member),
                scope="**" if binding.resource.startswith("project ") else f"{repo}/**",
                actions=actions,
                source=_source(binding),
            )

    def _bindings(self) -> list[_Binding]:
        found = []
        for repo in self._repository_ids():
            policy = self._get(f"{self._repository_url(repo)}:getIamPolicy", params=_V3)
            found += _bindings_of(f"repository {repo}", policy)
        if self.config.read_project_policy:
            found += _bindings_of(f"project {self.config.project}", self._project_policy())
        return found

    def _project_policy(self) -> dict[str, Any]:
        try:
            return self._post(f"{self._project_url}:getIamPolicy", {"options": _V3})
        except AuthError as exc:
            raise AuthError(
                f"{exc}. Grant resourcemanager.projects.getIamPolicy on {self.config.project}, or turn "
                "off project-wide grants (then access through project roles goes unreported)"
            ) from None

    def _principal(self, member: str) -> Principal:
        prefix, _, rest = member.partition(":")
        kinds = {"user": PrincipalKind.USER, "group": PrincipalKind.GROUP}
        if prefix in kinds:
            # Only an email the directory itself uses as the immutable id may link to a person or
            # group; otherwise the grant keeps the email as its name and links to nobody.
            directory_id = rest if self.config.directory_uses_emails else ""
            return Principal(kinds[prefix], id=member, name=rest, directory_id=directory_id)
        if prefix == "serviceAccount":
            return Principal(PrincipalKind.SERVICE_ACCOUNT, id=member, name=rest)
        names = {"allUsers": "anyone on the internet", "allAuthenticatedUsers": "any Google account"}
        if prefix == "domain":
            return Principal(PrincipalKind.OTHER, id=member, name=f"everyone at {rest}")
        return Principal(PrincipalKind.OTHER, id=member, name=names.get(member, member))

    # --- writing grants --------------------------------------------------------------------------

    @staticmethod
    def removable(principal_kind: str, source: str) -> bool:
        """Bindings of registry roles; basic roles (owner, editor, viewer) are left to the console."""
        match = _SOURCE.match(source)
        return match is not None and match["role"] not in NOT_EDITED

    def apply_access_plan(self, plan: AccessPlan) -> Iterator[GrantChange]:
        additions: dict[str, list[GrantChange]] = {}
        for change in plan.additions:
            additions.setdefault(_split(change.scope)[0], []).append(change)
        for repo, changes in additions.items():
            self._add_to_repository(repo, changes)
            yield from changes
        for change in plan.removals:
            self._remove(change)
            yield change

    def _add_to_repository(self, repo: str, changes: list[GrantChange]) -> None:
        """Bind each principal on the whole repository, where that is what the plan asks for.

        IAM attaches to the repository, not to an image path: binding a group for one image gives it
        every image there, so an addition is made only when the plan adds the same actions on every
        image path the repository holds.
        """
        paths = {image.path for image in self._images.get(repo) or self._list_images(repo)}
        wanted: dict[str, dict[str, set[str]]] = {}  # member → action → image paths
        for change in changes:
            for action in change.actions:
                wanted.setdefault(self._member(change.principal), {}).setdefault(action, set()).add(
                    _split(change.scope)[1]
                )
        roles = {}
        for member, by_action in wanted.items():
            partial = sorted(action for action, covered in by_action.items() if covered < paths)
            if partial:
                raise PermanentError(
                    f"Artifact Registry grants access per repository: binding {member} for "
                    f"{', '.join(partial)} on {repo} would reach images of {repo} no rule gives it. "
                    f"Write the rule for {repo}/**, or keep those images in a repository of their own"
                )
            roles[member] = _smallest_role(frozenset(by_action))
        self._edit_policy(f"repository {repo}", lambda bindings: _with_members(bindings, roles))

    def _remove(self, change: GrantChange) -> None:
        match = _SOURCE.match(change.source)
        if match is None:
            raise PermanentError(f"cannot tell which binding {change.source!r} is")
        role, condition = match["role"], match["cond"] or ""
        if role in NOT_EDITED:
            raise PermanentError(
                f"Customs does not edit {role}: it gives far more than registry access. "
                f"Take {change.principal.name or change.principal.id} out of it in the Google Cloud console"
            )
        member = self._member(change.principal)
        left = ROLE_ACTIONS.get(role, frozenset()) - set(change.actions)
        keep = next((r for r, actions in reversed(GRANTABLE) if actions <= left), None) if left else None

        def edit(bindings: list[dict[str, Any]]) -> list[dict[str, Any]]:
            present = any(_is(b, role, condition) and member in b.get("members", []) for b in bindings)
            bindings = _without_member(bindings, role, condition, member)
            # Narrowing (writer without push): the member keeps what the rules still give.
            return _with_members(bindings, {member: keep}) if present and keep else bindings

        resource = f"repository {match['repo']}" if match["repo"] else f"project {self.config.project}"
        self._edit_policy(resource, edit)

    def _member(self, principal: Principal) -> str:
        if ":" in principal.id or principal.id in ("allUsers", "allAuthenticatedUsers"):
            return principal.id  # already an IAM member, as read from a policy
        if principal.kind in (PrincipalKind.GROUP, PrincipalKind.USER) and "@" in principal.id:
            if not self.config.directory_uses_emails:
                raise ConfigError(
                    "IAM names groups and people by email; turn on 'directory uses emails' only if the "
                    "directory's immutable ids are those emails"
                )
            return f"{principal.kind}:{principal.id}"
        raise PermanentError(
            f"IAM names {principal.kind}s by email, and {principal.name or principal.id} is known to Customs "
            f"only by the directory id {principal.id}"
        )

    def _edit_policy(
        self, resource: str, edit: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]
    ) -> None:
        """Read, change and write one IAM policy, guarded by its etag; a concurrent edit means one retry."""
        url = (
            self._project_url
            if resource.startswith("project ")
            else self._repository_url(resource.split(" ", 1)[1])
        )
        for attempt in (1, 2):
            if resource.startswith("project "):
                policy = self._post(f"{url}:getIamPolicy", {"options": _V3})
            else:
                policy = self._get(f"{url}:getIamPolicy", params=_V3)
            bindings = [dict(b) for b in policy.get("bindings") or []]
            changed = [
                b
                for b in edit([dict(b, members=list(b.get("members", []))) for b in bindings])
                if b["members"]
            ]
            if _normal(changed) == _normal(bindings):
                return  # nothing to do: the change was made before (plans are re-run)
            policy = {**policy, "bindings": changed}
            if any("condition" in b for b in changed):
                policy["version"] = 3  # IAM refuses conditions in older policy versions
            try:
                self._post(f"{url}:setIamPolicy", {"policy": policy})
                return
            except _Conflict:
                if attempt == 2:
                    raise TransientError(
                        f"the IAM policy of {resource} kept changing while Customs edited it"
                    ) from None

    # --- credentials -----------------------------------------------------------------------------

    def read_credentials(self) -> Iterator[RemoteCredential]:
        bindings = self._bindings()
        accounts = sorted(
            {b.member.split(":", 1)[1] for b in bindings if b.member.startswith("serviceAccount:")}
        )
        for email in accounts:
            held = [b for b in bindings if b.member.endswith(f":{email}")]
            roles = sorted({f"{b.resource.split(' ', 1)[1]}: {b.role}" for b in held})
            # A key acts as its account: what the account's predefined roles give, read from the same
            # policies (custom roles are not read, so access through one is missing here too).
            actions = frozenset(a for b in held for a in ROLE_ACTIONS.get(b.role, ()))
            for key in self._keys(email):
                if key.get("keyType") == "SYSTEM_MANAGED":
                    continue  # Google holds these private keys and rotates them: nobody can leak one
                yield _credential(email, key, tuple(roles), actions)

    def _keys(self, email: str) -> list[dict[str, Any]]:
        try:
            body = self._get(f"{self._account_url(email)}/keys")
        except (AuthError, NotFoundError):
            if email.endswith(f"@{self.config.project}.iam.gserviceaccount.com"):
                raise  # our own project's account: the permission is missing, say so
            return []  # another project's account (or a Google service agent): not ours to list
        return [key for key in body.get("keys") or [] if isinstance(key, dict)]

    def disable_credential(self, credential_id: str) -> None:
        if not _KEY_NAME.match(credential_id):
            raise ConfigError(f"{credential_id!r} is not a service-account key name")
        url = f"{self.config.iam_url}/v1/{credential_id}"
        try:
            if self._get(url).get("disabled"):
                return
            self._post(f"{url}:disable", {})
        except NotFoundError:
            return  # deleted meanwhile: unusable either way

    # --- permission checks -----------------------------------------------------------------------

    def check_permissions(self) -> list[PermissionCheck]:
        inventory = self._try(self.needs[0], self._check_inventory)
        repo = next(iter(self._repository_ids()), None) if inventory.ok else None
        own = str(self.config.key_info()["client_email"])
        if self.config.read_project_policy:
            project = self._try(self.needs[2], self._project_policy)
        else:
            project = PermissionCheck(self.needs[2], ok=True, detail="project-wide grants are turned off")
        return [
            inventory,
            self._check_repository_policy(repo),
            project,
            self._try(self.needs[3], lambda: self._keys(own)),
            *self._check_writes(repo),
        ]

    def _check_inventory(self) -> None:
        for repo in self._repository_ids()[:1]:
            self._get(f"{self._repository_url(repo)}/dockerImages", params={"pageSize": 1})
        self._registry(self.config.url).check()

    def _check_repository_policy(self, repo: str | None) -> PermissionCheck:
        permission = "artifactregistry.repositories.getIamPolicy"
        if repo is not None:
            url = f"{self._repository_url(repo)}:getIamPolicy"
            return self._try(self.needs[1], lambda: self._get(url, params=_V3))
        # No repository to read a policy of: ask the project, whose grants every repository inherits.
        try:
            held = self._held(self._project_url, [permission])
        except ConnectorError as exc:
            return PermissionCheck(self.needs[1], ok=False, detail=str(exc))
        detail = "" if held else f"{permission} is not granted on project {self.config.project}"
        return PermissionCheck(self.needs[1], ok=bool(held), detail=detail)

    def _check_writes(self, repo: str | None) -> list[PermissionCheck]:
        """The optional writes, each asked of the resource it applies to with testIamPermissions, which
        changes nothing and answers with the subset of the permissions the caller holds there."""
        asked = {self._project_url: [SET_PROJECT_POLICY, DISABLE_KEYS]}
        if repo is None:  # nothing to try on: a grant on the project reaches every future repository
            asked[self._project_url].append(SET_REPOSITORY_POLICY)
        else:
            asked[self._repository_url(repo)] = [SET_REPOSITORY_POLICY]
        writes = (
            (self.needs[4], SET_REPOSITORY_POLICY),
            (self.needs[5], SET_PROJECT_POLICY),
            (self.needs[6], DISABLE_KEYS),
        )
        held: set[str] = set()
        try:
            for url, permissions in asked.items():
                held |= self._held(url, permissions)
        except ConnectorError as exc:
            detail = f"testIamPermissions failed, so this was not tried: {exc}"
            return [
                PermissionCheck(need, ok=False, detail=detail, required=False, tried=False)
                for need, _ in writes
            ]
        lacking = "is not granted: plans and offboarding cannot use it"
        return [
            PermissionCheck(need, ok=p in held, detail="" if p in held else f"{p} {lacking}", required=False)
            for need, p in writes
        ]

    def _held(self, resource_url: str, permissions: list[str]) -> set[str]:
        # proto3 JSON leaves an empty list out: holding none of them is an answer without "permissions".
        body = self._post(f"{resource_url}:testIamPermissions", {"permissions": permissions})
        return {str(permission) for permission in body.get("permissions") or []} & set(permissions)

    @staticmethod
    def _try(permission: str, call: Callable[[], object]) -> PermissionCheck:
        try:
            call()
        except ConnectorError as exc:
            return PermissionCheck(permission, ok=False, detail=str(exc))
        return PermissionCheck(permission, ok=True)

    # --- HTTP and the access token ---------------------------------------------------------------

    @property
    def _parent(self) -> str:
        return f"{self.config.api_url}/v1/projects/{self.config.project}/locations/{self.config.location}"

    @property
    def _project_url(self) -> str:
        return f"{self.config.resource_manager_url}/v1/projects/{self.config.project}"

    def _account_url(self, email: str) -> str:
        # "-": IAM finds the account in whichever project holds it.
        return f"{self.config.iam_url}/v1/projects/-/serviceAccounts/{quote(email, safe='@')}"

    def _repository_url(self, repo: str) -> str:
        return f"{self._parent}/repositories/{quote(repo, safe='')}"

    @property
    def _session(self) -> OutboundSession:
        session: OutboundSession | None = getattr(self._local, "session", None)
        if session is None:
            session = outbound_session(purpose="artifact registry")
            self._local.session = session
        return session

    def _access_token(self, *, renew: bool = False) -> str:
        with self._token_lock:
            if renew or not self._credentials.valid:
                try:
                    self._credentials.refresh(GoogleRequest(self._session))
                except google_exceptions.TransportError as exc:
                    raise TransientError(f"cannot reach the token endpoint: {type(exc).__name__}") from None
                except google_exceptions.RefreshError as exc:
                    if getattr(exc, "retryable", False):
                        raise TransientError("the token endpoint failed; try again") from None
                    # The key is deleted, disabled or expired: the message names the reason, not the key.
                    raise AuthError(
                        f"Google refused the service-account key: {exc.args[0] if exc.args else ''}"
                    ) from None
            return str(self._credentials.token)

    def _get(self, url: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._call("GET", url, params=params)

    def _post(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", url, json=body)

    def _call(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        response = self._session.request(method, url, headers=self._bearer(), **kwargs)
        if response.status_code == 401:  # the access token expired or was revoked: one fresh one
            response = self._session.request(method, url, headers=self._bearer(renew=True), **kwargs)
        _raise_for_status(response)
        return json_object(response)

    def _bearer(self, *, renew: bool = False) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._access_token(renew=renew)}"}

    def _pages(self, url: str, key: str) -> Iterator[dict[str, Any]]:
        """Every item of a list, following nextPageToken (the same request with pageToken set)."""
        params: dict[str, Any] = {"pageSize": self.config.page_size}
        while True:
            body = self._get(url, params=params)
            yield from (item for item in body.get(key) or [] if isinstance(item, dict))
            token = body.get("nextPageToken")
            if not isinstance(token, str) or not token:
                return
            params = {"pageSize": self.config.page_size, "pageToken": token}


_V3 = {"options.requestedPolicyVersion": 3}


class _Conflict(PermanentError):
    """409 ABORTED: the policy's etag changed since it was read."""


def _raise_for_status(response: requests.Response) -> None:
    if response.ok:
        return
    where, code = response.url.split("?", 1)[0], response.status_code
    status, message = _google_error(response)
    detail = f"{code} {status} from {where}: {message}".strip().rstrip(":")
    if code == 429 or status == "RESOURCE_EXHAUSTED":
        raise RateLimited(detail, retry_after=retry_after(response.headers))
    if code in (401, 403):
        raise AuthError(detail)
    if code == 404:
        raise NotFoundError(detail)
    if code == 409:
        raise _Conflict(detail)
    if code >= 500 or code == 408:
        raise TransientError(detail)
    raise PermanentError(detail)


def _google_error(response: requests.Response) -> tuple[str, str]:
    # Google's envelope: {"error": {"code": 429, "message": "...", "status": "RESOURCE_EXHAUSTED"}}.
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return "", ""
    if not isinstance(error, dict):
        return "", ""
    return str(error.get("status", "")), str(error.get("message", ""))[:300]


def _split(repository: str) -> tuple[str, str]:
    repo, _, path = repository.partition("/")
    if not path:
        raise ConfigError(f"{repository} is not <repository>/<image path>")
    return repo, path


def _image(item: dict[str, Any]) -> _Image:
    # name: projects/p/locations/l/repositories/r/dockerImages/<path, %2F-encoded>@sha256:...
    tail = str(item["name"]).split("/dockerImages/", 1)[1]
    path, _, digest = tail.replace("%2F", "/").replace("%2f", "/").rpartition("@")
    return _Image(
        path=path,
        digest=digest,
        tags=tuple(str(tag) for tag in item.get("tags") or []),
        uploaded=parse_rfc3339(item.get("uploadTime")),
        updated=parse_rfc3339(item.get("updateTime")),
        built=parse_rfc3339(item.get("buildTime")),
    )


def _legacy_manifest_times(body: dict[str, Any]) -> dict[str, _LegacyTimes]:
    """The `manifest` map of gcr.io's tags/list: digest → timeCreatedMs and timeUploadedMs."""
    manifest = body.get("manifest")
    if not isinstance(manifest, dict):
        return {}
    return {
        digest: _LegacyTimes(_epoch_ms(entry.get("timeCreatedMs")), _epoch_ms(entry.get("timeUploadedMs")))
        for digest, entry in manifest.items()
        if isinstance(digest, str) and digest.startswith("sha256:") and isinstance(entry, dict)
    }


def _epoch_ms(value: object) -> datetime | None:
    """Milliseconds since the epoch, written as a decimal string; anything else (a number, a sign, a
    fraction, "0" for "not recorded", a time past year 9999) is no time at all."""
    if not isinstance(value, str) or not _EPOCH_MS.fullmatch(value) or int(value) == 0:
        return None
    try:
        return _EPOCH + timedelta(milliseconds=int(value))
    except OverflowError:
        return None


def _bindings_of(resource: str, policy: dict[str, Any]) -> list[_Binding]:
    found = []
    for binding in policy.get("bindings") or []:
        condition = binding.get("condition") or {}
        label = str(condition.get("title") or condition.get("expression") or "")
        for member in binding.get("members") or []:
            found.append(_Binding(resource, str(binding.get("role", "")), str(member), label))
    return found


def _everyone_fact(
    check: PostureCheck, resource: str, policy: dict[str, Any], subject: str, url: str
) -> PostureFact:
    """Whether a policy gives allUsers or allAuthenticatedUsers a role that pulls (conditions or not:
    neither member can be narrowed to the organisation by one)."""
    opened = sorted(
        f"{binding.role} to {binding.member} ({EVERYONE[binding.member]})"
        for binding in _bindings_of(resource, policy)
        if binding.member in EVERYONE and "pull" in ROLE_ACTIONS.get(binding.role, frozenset())
    )
    if opened:
        evidence = f"{resource} grants {'; '.join(opened)}"
        return PostureFact(check, PostureState.FAILING, evidence, subject, url)
    evidence = f"{resource} grants no registry role to allUsers or allAuthenticatedUsers"
    return PostureFact(check, PostureState.OK, evidence, subject, url)


def _scanning_fact(repo: str, item: dict[str, Any], url: str) -> PostureFact:
    """vulnerabilityScanningConfig.enablementState (the googleapis Repository message; registry-apis.md
    §7.2 lists the field only): SCANNING_ACTIVE scans each image as it is pushed."""
    config = item.get("vulnerabilityScanningConfig")
    state = str(config.get("enablementState") or "") if isinstance(config, dict) else ""
    subject = f"{repo}/**"
    if state == "SCANNING_ACTIVE":
        evidence = f"repository {repo} scans pushed images (SCANNING_ACTIVE)"
        return PostureFact(PostureCheck.SCAN_ON_PUSH_OFF, PostureState.OK, evidence, subject, url)
    if state == "SCANNING_DISABLED":
        reason = str(config.get("enablementStateReason") or "") if isinstance(config, dict) else ""
        evidence = f"repository {repo} does not scan pushed images (SCANNING_DISABLED)"
        evidence += f": {reason}" if reason else ""
        return PostureFact(PostureCheck.SCAN_ON_PUSH_OFF, PostureState.FAILING, evidence, subject, url)
    evidence = f"repository {repo} reports no scanning state{f' ({state})' if state else ''}"
    return PostureFact(PostureCheck.SCAN_ON_PUSH_OFF, PostureState.UNKNOWN, evidence, subject, url)


def _immutable_tags_fact(repository: str, item: dict[str, Any], url: str) -> PostureFact:
    """dockerConfig.immutableTags of the Artifact Registry repository holding the image path; proto3
    leaves a false boolean out, so no dockerConfig means mutable."""
    repo = _split(repository)[0]
    if (item.get("dockerConfig") or {}).get("immutableTags") is True:
        evidence = f"repository {repo} has immutable tags"
        return PostureFact(PostureCheck.TAG_MUTABLE, PostureState.OK, evidence, repository, url)
    evidence = f"repository {repo} allows tags to move (dockerConfig.immutableTags is off)"
    return PostureFact(PostureCheck.TAG_MUTABLE, PostureState.FAILING, evidence, repository, url)


def _source(binding: _Binding) -> str:
    return f"{binding.resource}: {binding.role}" + (f" if {binding.condition}" if binding.condition else "")


def _is(binding: dict[str, Any], role: str, condition: str) -> bool:
    label = (
        (binding.get("condition") or {}).get("title")
        or (binding.get("condition") or {}).get("expression")
        or ""
    )
    return binding.get("role") == role and label == condition


def _smallest_role(actions: frozenset[str]) -> str:
    return next(role for role, gives in GRANTABLE if actions <= gives)


def _with_members(bindings: list[dict[str, Any]], roles: Mapping[str, str | None]) -> list[dict[str, Any]]:
    for member, role in roles.items():
        if role is None:
            continue
        target = next((b for b in bindings if _is(b, role, "")), None)
        if target is None:
            bindings.append({"role": role, "members": [member]})
        elif member not in target["members"]:
            target["members"].append(member)
    return bindings


def _without_member(
    bindings: list[dict[str, Any]], role: str, condition: str, member: str
) -> list[dict[str, Any]]:
    for binding in bindings:
        if _is(binding, role, condition):
            binding["members"] = [m for m in binding["members"] if m != member]
    return bindings


def _normal(bindings: Iterable[dict[str, Any]]) -> list[tuple[str, str, tuple[str, ...]]]:
    return sorted(
        (
            str(b.get("role")),
            json.dumps(b.get("condition"), sort_keys=True),
            tuple(sorted(b.get("members", []))),
        )
        for b in bindings
        if b.get("members")
    )


def _credential(
    email: str, key: dict[str, Any], roles: tuple[str, ...], actions: frozenset[str]
) -> RemoteCredential:
    name = str(key["name"])
    before = parse_rfc3339(key.get("validBeforeTime"))
    never = before is not None and before.year >= NEVER_YEAR
    account = Principal(PrincipalKind.SERVICE_ACCOUNT, id=f"serviceAccount:{email}", name=email)
    return RemoteCredential(
        kind=CredentialKind.SERVICE_ACCOUNT_KEY,
        id=name,
        name=f"{email} key {name.rsplit('/', 1)[-1][:12]}",
        enabled=not key.get("disabled", False),
        owner=account,
        created_at=parse_rfc3339(key.get("validAfterTime")),
        expires_at=None if never else before,
        expiry_known=before is not None,  # absent: Google did not say, which is not "never"
        # IAM keeps no last use; only Policy Analyzer's key activity has it, which Customs does not read.
        last_used_at=None,
        usage_known=False,
        last_used_source="",
        scopes=roles,
        actions=actions,
    )
