"""Docker Hub: one organisation's (or user's) repositories, tags, access and access tokens.

Docker Hub splits itself over two hosts. The Hub API (`hub.docker.com`) lists repositories and tags
and knows when each tag was last pushed and pulled; it wants a short-lived JWT obtained from
`POST /v2/auth/token` with a personal or organisation access token. Manifests, configs and layers
come from the registry (`registry-1.docker.io`) through the Docker token flow with the same
username and access token, read by the distribution connector so digests are checked alike.

Manifests are resolved with HEAD, which Docker Hub does not count against pull rate limits.

Who can do what: organisation owners can do everything (`**`); everyone else gets access only
through teams, each team holding read, write or admin on single repositories. So grants are the
owners, each team's permission on each repository (a GROUP principal), and the same permission
once per team member (a USER principal): Docker Hub teams are not directory groups (they carry no
directory id; SSO group mapping matches them by name), so the members are the only way Customs
learns which people a team lets in. Organisation access tokens are robots with their own grants.

Credentials: the signed-in account's own personal access tokens and the organisation's access
tokens. Docker Hub reports the last use of both; when it leaves the field out, the account's latest
push in the organisation's audit log is an estimate, and `last_used_source` says so. The same log
gives the personal tokens their per-action evidence: the account's latest push and delete (the log
names the account, not the token, and records no pulls).

Docker Hub has no regions and no replication. Repository webhooks carry no digest
(registries/webhooks/dockerhub.py); the tag is resolved through `resolve()`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import threading
import time
from collections.abc import Callable, Collection, Iterator
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote, urljoin

import requests
from pydantic import Field, SecretStr, field_validator

from portal.http import OutboundSession, outbound_session
from registries.connectors.base import (
    ACTIONS,
    AccessPlan,
    Capability,
    ChangeOp,
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
    RemoteRepository,
    RemoteTag,
    http_url,
    parse_rfc3339,
    visibility_fact,
)
from registries.connectors.distribution import DistributionConfig, DistributionConnector
from registries.connectors.errors import (
    AuthError,
    ConfigError,
    ConnectorError,
    NotFoundError,
    PermanentError,
    json_body,
    json_object,
    raise_for_status,
)
from registries.patterns import InvalidPattern, compile_pattern, is_valid_repository_name

HUB = "https://hub.docker.com"
REGISTRY = "https://registry-1.docker.io"
# The Hub's JWT lives 10 minutes; renew a little before, so a long listing never sends a dead one.
JWT_LIFETIME_SECONDS = 9 * 60

# A team's permission on a repository, as actions; admin also manages settings, which has no action.
PERMISSION_ACTIONS: dict[str, frozenset[str]] = {
    "read": frozenset({"pull"}),
    "write": frozenset({"pull", "push"}),
    "admin": frozenset({"pull", "push", "delete"}),
}
ALL_ACTIONS = frozenset(ACTIONS)
# Organisation access token scopes on a repository (TYPE_REPO resources).
OAT_SCOPE_ACTIONS = {"repo-pull": "pull", "repo-push": "push", "repo-delete": "delete"}
# Personal access token scopes, each including the ones below it (registry-apis.md §8.3).
PAT_SCOPE_ACTIONS: dict[str, frozenset[str]] = {
    "repo:public_read": frozenset({"pull"}),
    "repo:read": frozenset({"pull"}),
    "repo:write": frozenset({"pull", "push"}),
    "repo:admin": frozenset(ACTIONS),
}
# Organisation roles that reach every repository: owners, and editors (who manage repositories;
# not in the published role enum, which says Owner, Member, Invitee).
ORG_WIDE_ROLES = ("owner", "editor")
TEAM_SOURCE = re.compile(r"^team (?P<team>\S+)(?P<member> member)?: (?P<permission>read|write|admin)$")
AUDIT_PUSH = "repo.tag.push"
# The audit log's repository actions that are image use (§8.4); pulls are not audited at all.
AUDIT_ACTIONS = {AUDIT_PUSH: "push", "repo.tag.delete": "delete", "repo.delete": "delete"}
AUDIT_SSO_ENFORCEMENT = "sso.connection.enforcement_toggle"  # in the audit log's `org` group (§8.4)


class DockerHubConfig(ConnectorConfig):
    url: str = HUB
    namespace: str
    username: str
    token: SecretStr
    registry_url: str = REGISTRY
    page_size: int = 100
    link_members_by_email: bool = Field(
        default=False,
        description="Only if your directory identifies people by e-mail address: link Docker Hub "
        "members to Customs users by their e-mail. Off: members stay Docker Hub names.",
    )

    @field_validator("url", "registry_url")
    @classmethod
    def _urls(cls, value: str) -> str:
        return http_url(value)

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        value = value.strip().lower()
        if not value or "/" in value:
            raise ValueError("the namespace is one organisation or user name, e.g. acme")
        return value

    @field_validator("page_size")
    @classmethod
    def _page_size(cls, value: int) -> int:
        if not 1 <= value <= 100:  # the Hub API caps page_size at 100
            raise ValueError("page size must be between 1 and 100")
        return value


class DockerHubConnector:
    kind: ClassVar[str] = "dockerhub"
    label: ClassVar[str] = "Docker Hub"
    config_class: ClassVar[type[ConnectorConfig]] = DockerHubConfig
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.REPOSITORIES,
            Capability.ARTIFACTS,
            Capability.PUSHED_AT,
            Capability.PULLED_AT,
            Capability.CREDENTIALS,
            Capability.GRANTS,
            Capability.WRITE_GRANTS,
            Capability.DISABLE_CREDENTIALS,
            Capability.REMOVE_MEMBERS,
            Capability.EVENTS,
            Capability.POSTURE,
        }
    )
    # Leaving the organisation leaves its teams, and people hold access only through those.
    membership_covers_grants: ClassVar[bool] = True
    needs: ClassVar[tuple[str, ...]] = (
        "list the namespace's repositories and tags (personal access token scope repo:read, "
        "or an organisation access token with repo-pull on the repositories)",
        "pull manifests from registry-1.docker.io with the same token (repo:read / repo-pull)",
        "list the organisation's members (organisation owner)",
        "list teams, their members and each repository's team permissions (organisation owner)",
        "list the organisation's access tokens (organisation owner)",
        "list the account's own personal access tokens (skipped when signing in with an organisation token)",
        "read the organisation's audit log, to estimate a last use Docker Hub leaves out and to see "
        "what the account's tokens pushed and deleted (organisation owner)",
        "optional, only for reconcile plans and offboarding (a sync needs nothing beyond the reads "
        "above): give teams repository permissions, remove members from teams and the organisation, "
        "deactivate organisation access tokens (organisation owner, personal access token scope "
        "repo:admin); the check reads the account's role but cannot try the token's scope",
    )

    def __init__(self, config: DockerHubConfig) -> None:
        self.config = config
        self._local = threading.local()
        self._jwt: tuple[str, float] | None = None  # (token, monotonic time it was issued)
        self._jwt_lock = threading.Lock()
        # (repository, digest) → (last pushed, last pulled) as the tag listing reported them: the
        # Hub keeps times per tag, and an artifact's are those of the tags pointing at it.
        self._times: dict[tuple[str, str], tuple[datetime | None, datetime | None]] = {}
        self._registry = DistributionConnector(
            DistributionConfig(url=config.registry_url, username=config.username, password=config.token)
        )

    # --- the interface ---------------------------------------------------------------------------

    def check(self) -> None:
        self._get(self._namespace_path(), params={"page_size": 1})
        self._registry.check()

    def repositories(self) -> Iterator[RemoteRepository]:
        for item in self._pages(self._namespace_path()):
            yield RemoteRepository(name=f"{self.config.namespace}/{item['name']}")

    def tags(self, repository: str) -> list[RemoteTag]:
        tags = []
        for item in self._pages(f"{self._repository_path(repository)}/tags"):
            # The live Hub sends the tag's own digest; the published description does not have it.
            digest = item.get("digest")
            if not (isinstance(digest, str) and digest.startswith("sha256:")):
                digest = self._registry.resolve(repository, str(item["name"]))
            self._note_times(repository, digest, item)
            tags.append(RemoteTag(name=str(item["name"]), digest=digest))
        return sorted(tags, key=lambda tag: tag.name)

    def resolve(self, repository: str, reference: str) -> str:
        return self._registry.resolve(repository, reference)

    def artifact(self, repository: str, digest: str) -> RemoteArtifact:
        record = self._registry.artifact(repository, digest)
        pushed, pulled = self._times.get((repository, digest), (None, None))
        return dataclasses.replace(record, pushed_at=pushed, last_pulled_at=pulled)

    # --- permissions, one by one -----------------------------------------------------------------

    def check_permissions(self) -> list[PermissionCheck]:
        org = self._org_path()
        one = {"page_size": 1}
        steps: list[tuple[str, Callable[[], str]]] = [
            (self.needs[0], lambda: self._tried(self._namespace_path(), one)),
            (self.needs[1], self._try_registry),
            (self.needs[2], lambda: self._tried(f"{org}/members", one)),
            (self.needs[3], self._try_team_permissions),
            (self.needs[4], lambda: self._tried(f"{org}/access-tokens", one)),
            (self.needs[5], self._try_personal_tokens),
            (self.needs[6], lambda: self._tried(self._audit_path(), one)),
        ]
        checks = []
        for permission, attempt in steps:
            try:
                checks.append(PermissionCheck(permission, ok=True, detail=attempt()))
            except ConnectorError as exc:
                checks.append(PermissionCheck(permission, ok=False, detail=str(exc)))
        checks.append(self._write_check())
        return checks

    def _tried(self, path: str, params: dict[str, Any]) -> str:
        self._get(path, params=params)
        return f"GET {path} answered"

    def _try_registry(self) -> str:
        self._registry.check()
        return "signed in to the registry"

    def _try_team_permissions(self) -> str:
        self._get(f"{self._org_path()}/groups", params={"page_size": 1})
        first = next(iter(self._pages(self._namespace_path())), None)
        if first is None:
            return "teams listed; no repository to try team permissions on yet"
        self._get(f"{self._groups_path(self.config.namespace + '/' + str(first['name']))}", {"page_size": 1})
        return f"teams listed; team permissions read on {self.config.namespace}/{first['name']}"

    def _try_personal_tokens(self) -> str:
        if self._signed_in_with_org_token:
            return "skipped: an organisation access token has no personal access tokens"
        return self._tried("/v2/access-tokens", {"page_size": 1})

    def _write_check(self) -> PermissionCheck:
        """The writes: optional, and no harmless request proves them; a role short of owner rules them out."""
        need, user = self.needs[7], self.config.username
        try:
            members = self._members()
        except ConnectorError as exc:
            return PermissionCheck(need, ok=False, required=False, tried=False, detail=f"role unknown: {exc}")
        if members is None:
            return PermissionCheck(
                need, ok=False, required=False, detail="a personal namespace has no teams or members"
            )
        role = str((members.get(user) or {}).get("role", "")).lower()
        if role != "owner":
            return PermissionCheck(
                need, ok=False, required=False, detail=f"{user} is not an owner ({role or 'not a member'})"
            )
        # The Hub does not say which scopes the token in use carries: repo:admin shows only by writing.
        return PermissionCheck(
            need,
            ok=True,
            required=False,
            tried=False,
            detail=f"{user} is an owner; the token's scope is not tried",
        )

    # --- credentials -----------------------------------------------------------------------------

    def read_credentials(self) -> Iterator[RemoteCredential]:
        members = self._members()
        if not self._signed_in_with_org_token:
            yield from self._personal_tokens(members or {})
        if members is not None:  # organisation access tokens exist only in organisations
            yield from self._org_tokens(members)

    def _personal_tokens(self, members: dict[str, dict[str, Any]]) -> Iterator[RemoteCredential]:
        # Docker Hub lists only the caller's own PATs: they all belong to the account Customs signs in as.
        actor = self.config.username
        owner = self._person(actor, members)
        tokens = list(self._pages("/v2/access-tokens"))
        audited = self._audited_use(actor) if tokens else None
        for item in tokens:
            last_used, usage_known, source = (
                parse_rfc3339(item.get("last_used")),
                True,
                "Docker Hub token list",
            )
            if "last_used" not in item:
                # Not reported: the account's latest audited push is the best estimate there is.
                last_used = audited.get("push") if audited is not None else None
                usage_known = last_used is not None
                source = f"Docker Hub audit log: {actor}'s latest push (estimate)" if last_used else ""
            actions = frozenset(
                a for scope in item.get("scopes") or () for a in PAT_SCOPE_ACTIONS.get(str(scope), ())
            )
            yield RemoteCredential(
                kind=CredentialKind.ACCESS_TOKEN,
                id=str(item["uuid"]),
                name=str(item.get("token_label") or item["uuid"]),
                enabled=item.get("is_active") is not False,
                owner=owner,
                created_by=owner,
                created_at=parse_rfc3339(item.get("created_at")),
                expires_at=parse_rfc3339(item.get("expires_at")),
                expiry_known="expires_at" in item,
                last_used_at=last_used,
                usage_known=usage_known,
                last_used_source=source,
                scopes=tuple(str(scope) for scope in item.get("scopes") or ()),
                actions=actions,
                # The account's use, through any of its tokens or its password: it bounds this token's
                # (no push by the account is no push by the token), and is kept to what the token holds.
                actions_seen={a: t for a, t in (audited or {}).items() if a in actions or not actions},
                actions_seen_source=_audit_source(actor) if audited is not None else "",
            )

    def _org_tokens(self, members: dict[str, dict[str, Any]]) -> Iterator[RemoteCredential]:
        for item in self._pages(f"{self._org_path()}/access-tokens"):
            detail = self._org_token_detail(str(item["id"]))
            creator = str(item.get("created_by") or "")
            yield RemoteCredential(
                kind=CredentialKind.ORGANIZATION_TOKEN,
                id=str(item["id"]),
                name=str(item.get("label") or item["id"]),
                enabled=item.get("is_active") is not False,
                created_by=self._person(creator, members) if creator else None,
                created_at=parse_rfc3339(item.get("created_at")),
                expires_at=parse_rfc3339(item.get("expires_at")),  # null: never expires
                expiry_known="expires_at" in item,
                last_used_at=parse_rfc3339(item.get("last_used_at")),
                # The audit log names people, not organisation tokens: nothing to estimate from.
                usage_known="last_used_at" in item,
                last_used_source="Docker Hub organisation token list" if "last_used_at" in item else "",
                scopes=tuple(_resource_text(resource) for resource in detail.get("resources") or ()),
                actions=frozenset(
                    OAT_SCOPE_ACTIONS[str(scope)]
                    for resource in detail.get("resources") or ()
                    if isinstance(resource, dict)
                    for scope in resource.get("scopes") or ()
                    if str(scope) in OAT_SCOPE_ACTIONS
                ),
            )

    def _org_token_detail(self, token_id: str) -> dict[str, Any]:
        return json_object(self._get(f"{self._org_path()}/access-tokens/{quote(token_id, safe='')}"))

    def _audited_use(self, actor: str) -> dict[str, datetime] | None:
        """The actor's latest push and delete in the organisation's audit log, one request per audited
        action; None when the log cannot be read (a personal namespace, or an account that is not an owner).

        An action missing from the answer was not logged as long as the log goes back; pulls never are."""
        seen: dict[str, datetime] = {}
        for native, action in AUDIT_ACTIONS.items():
            try:
                body = json_object(
                    self._get(self._audit_path(), params={"actor": actor, "action": native, "page_size": 100})
                )
            except (NotFoundError, AuthError):
                return None
            moments = [
                parse_rfc3339(log.get("timestamp")) for log in body.get("logs") or [] if isinstance(log, dict)
            ]
            latest = max((moment for moment in moments if moment), default=None)
            if latest is not None and (action not in seen or latest > seen[action]):
                seen[action] = latest
        return seen

    def disable_credential(self, credential_id: str) -> None:
        """Deactivate an organisation access token (or the account's own PAT); gone is success."""
        token = quote(credential_id, safe="")
        try:
            self._request("PATCH", f"{self._org_path()}/access-tokens/{token}", json={"is_active": False})
            return
        except NotFoundError:
            if self._signed_in_with_org_token:
                return  # not an organisation token, and an OAT cannot reach personal ones: gone
        with contextlib.suppress(NotFoundError):  # deleted already: nothing left to disable
            self._request("PATCH", f"/v2/access-tokens/{token}", json={"is_active": False})

    # --- grants ----------------------------------------------------------------------------------

    def read_grants(self) -> Iterator[RemoteGrant]:
        members = self._members()
        namespace = self.config.namespace
        if members is None:
            # A personal namespace: its owner is the only one with access (collaborators are not listed).
            owner = Principal(PrincipalKind.USER, id=namespace, name=namespace)
            yield RemoteGrant(owner, "**", ALL_ACTIONS, source="owner of the personal namespace")
            return
        for username, member in members.items():
            role = str(member.get("role", "")).lower()
            if role in ORG_WIDE_ROLES:
                yield RemoteGrant(
                    self._person(username, members), "**", ALL_ACTIONS, source=f"organisation {role}"
                )
        teams = {str(team["name"]): team for team in self._pages(f"{self._org_path()}/groups")}
        people = {
            name: [
                self._person(str(m["username"]), members) for m in self._pages(self._team_members_path(name))
            ]
            for name in teams
        }
        yield from self._oat_grants()
        for repository in self.repositories():
            for entry in self._pages(self._groups_path(repository.name)):
                team, permission = str(entry.get("group_name", "")), str(entry.get("permission", ""))
                actions = PERMISSION_ACTIONS.get(permission)
                if not team or actions is None:
                    raise PermanentError(
                        f"Docker Hub reported a team permission {permission!r} on {repository.name}"
                    )
                team_id = entry.get("group_id", (teams.get(team) or {}).get("id", team))
                principal = Principal(PrincipalKind.GROUP, id=_id_text(team_id), name=team)
                yield RemoteGrant(principal, repository.name, actions, source=f"team {team}: {permission}")
                for person in people.get(team, ()):
                    yield RemoteGrant(
                        person, repository.name, actions, source=f"team {team} member: {permission}"
                    )

    def _oat_grants(self) -> Iterator[RemoteGrant]:
        for item in self._pages(f"{self._org_path()}/access-tokens"):
            if item.get("is_active") is False:
                continue  # a deactivated token opens nothing
            token = Principal(
                PrincipalKind.ROBOT, id=str(item["id"]), name=str(item.get("label") or item["id"])
            )
            for resource in self._org_token_detail(str(item["id"])).get("resources") or ():
                scope = _resource_scope(resource, self.config.namespace)
                actions = frozenset(
                    OAT_SCOPE_ACTIONS[s] for s in resource.get("scopes") or () if s in OAT_SCOPE_ACTIONS
                )
                if scope and actions:
                    yield RemoteGrant(
                        token, scope, actions, source=f"organisation token: {_resource_text(resource)}"
                    )

    def _person(self, username: str, members: dict[str, dict[str, Any]]) -> Principal:
        """A Docker Hub user; linked to the directory by e-mail only where the directory's ids are e-mails."""
        member = members.get(username) or {}
        email = str(member.get("email") or "").strip().lower()
        return Principal(
            PrincipalKind.USER,
            id=username,
            name=str(member.get("full_name") or username),
            directory_id=email if self.config.link_members_by_email else "",
        )

    def _members(self) -> dict[str, dict[str, Any]] | None:
        """The organisation's members by username, or None when the namespace is a user, not an org."""
        try:
            entries = list(self._member_entries())
        except NotFoundError:
            return None
        return {str(m["username"]): m for m in entries if m.get("username") and m.get("role") != "Invitee"}

    def _member_entries(self) -> Iterator[dict[str, Any]]:
        # The service answers with one page envelope; the description says a list (of envelopes, or
        # of members in older answers). Read every form; pages follow `next` whichever it is.
        url: str | None = f"{self._org_path()}/members"
        params: dict[str, Any] | None = {"page_size": self.config.page_size}
        while url:
            body = json_body(self._get(url, params=params))
            pages = body if isinstance(body, list) else [body]
            url, params = None, None
            for page in pages:
                if isinstance(page, dict) and "results" in page:
                    yield from (m for m in page.get("results") or [] if isinstance(m, dict))
                    url = self._next_url(page) or url
                elif isinstance(page, dict):
                    yield page  # a bare member

    # --- posture ---------------------------------------------------------------------------------

    def read_posture(self, production: Collection[str] = ()) -> Iterator[PostureFact]:
        """Repository visibility; immutable tags on the production repositories (one request each);
        and, for an organisation, its members flagged as guests and what is known of SSO enforcement."""
        for item in self._pages(self._namespace_path()):
            yield self._visibility_fact(f"{self.config.namespace}/{item['name']}", item.get("is_private"))
        for repository in sorted(production):
            yield self._immutability_fact(repository)
        members = self._members()
        if members is None:
            return  # a personal namespace: no members, no organisation SSO
        yield self._sso_fact()
        yield from self._guest_facts(members)

    def _visibility_fact(self, repository: str, private: object) -> PostureFact:
        public = (not private) if isinstance(private, bool) else None  # Docker Hub says is_private
        return visibility_fact(repository, public, f"{self.config.url}{self._repository_path(repository)}")

    def _immutability_fact(self, repository: str) -> PostureFact:
        """repository_info's immutable_tags_settings: enabled, with the tag rules (regexes) it keeps."""
        url = f"{self.config.url}{self._repository_path(repository)}"
        settings = json_object(self._get(self._repository_path(repository))).get("immutable_tags_settings")
        if not isinstance(settings, dict) or not isinstance(settings.get("enabled"), bool):
            evidence = "Docker Hub did not report immutable_tags_settings"
            return PostureFact(PostureCheck.TAG_MUTABLE, PostureState.UNKNOWN, evidence, repository, url)
        rules = [str(rule) for rule in settings.get("rules") or []]
        if settings["enabled"] and rules:
            evidence = f"immutable tags on, for tags matching {', '.join(rules)}"
            return PostureFact(PostureCheck.TAG_MUTABLE, PostureState.OK, evidence, repository, url)
        evidence = (
            "immutable tags on, but with no rule: no tag is kept"
            if settings["enabled"]
            else "immutable tags off"
        )
        return PostureFact(PostureCheck.TAG_MUTABLE, PostureState.FAILING, evidence, repository, url)

    def _sso_fact(self) -> PostureFact:
        """The Hub API does not say whether the organisation enforces SSO; its audit log may say when
        someone last turned enforcement on or off (the event's own fields are not documented)."""
        evidence = (
            "Docker Hub's API does not report whether the organisation enforces SSO "
            "(Admin Console: Security, SSO)"
        )
        url = f"{self.config.url}{self._audit_path()}?action={AUDIT_SSO_ENFORCEMENT}"
        try:
            body = json_object(
                self._get(self._audit_path(), params={"action": AUDIT_SSO_ENFORCEMENT, "page_size": 1})
            )
        except (NotFoundError, AuthError):
            return PostureFact(
                PostureCheck.SSO_NOT_ENFORCED, PostureState.UNKNOWN, evidence, evidence_url=url
            )
        logs = [log for log in body.get("logs") or [] if isinstance(log, dict)]
        if logs:
            evidence += (
                f"; the audit log's latest change to SSO enforcement: {logs[0].get('timestamp', '?')} "
                f"by {logs[0].get('actor', '?')}"
            )
        else:
            evidence += "; no change to SSO enforcement in the audit log"
        return PostureFact(PostureCheck.SSO_NOT_ENFORCED, PostureState.UNKNOWN, evidence, evidence_url=url)

    def _guest_facts(self, members: dict[str, dict[str, Any]]) -> Iterator[PostureFact]:
        """Members Docker Hub flags as guests: their e-mail is outside the organisation's verified
        domains, so the organisation's SSO connection cannot sign them in (§8.4 `is_guest`)."""
        url = f"{self.config.url}{self._org_path()}/members"
        flags = {name: member.get("is_guest") for name, member in members.items()}
        for name, flag in sorted(flags.items()):
            if flag is True:
                evidence = f"{name} is a guest: an e-mail outside the verified domains, so no SSO sign-in"
                yield PostureFact(
                    PostureCheck.MEMBERS_WITHOUT_SSO, PostureState.FAILING, evidence, f"member {name}", url
                )
        if not any(flag is True for flag in flags.values()):
            if all(isinstance(flag, bool) for flag in flags.values()):
                # Docker Hub flags guests only where the organisation has verified domains.
                evidence = (
                    f"none of {len(flags)} members is flagged as a guest (outside the verified domains)"
                )
                yield PostureFact(
                    PostureCheck.MEMBERS_WITHOUT_SSO, PostureState.OK, evidence, evidence_url=url
                )
            else:
                evidence = "the member list does not say who is a guest"
                yield PostureFact(
                    PostureCheck.MEMBERS_WITHOUT_SSO, PostureState.UNKNOWN, evidence, evidence_url=url
                )

    # --- writes: reconcile plans and offboarding -------------------------------------------------

    def memberships_of(self, principal_id: str) -> list[str]:
        return self._memberships(principal_id)[1]

    def remove_person(self, principal_id: str) -> list[str]:
        username, where = self._memberships(principal_id)
        if where:
            self.remove_member(username)
        return where

    def _memberships(self, principal_id: str) -> tuple[str, list[str]]:
        """The member a principal id names, and where they are one. The member listing names each
        member's teams (org_member.groups), so no team is read."""
        members = self._members()
        username = self._username(principal_id, members or {})
        if members is None or username not in members:
            return username, []  # a personal namespace has no members, only its owner
        teams = sorted(str(team) for team in members[username].get("groups") or [])
        return username, [f"organisation {self.config.namespace}", *(f"team {team}" for team in teams)]

    def _username(self, principal_id: str, members: dict[str, dict[str, Any]]) -> str:
        """The member a principal id names: a username, or their e-mail where members are linked by it."""
        if not self.config.link_members_by_email or "@" not in principal_id:
            return principal_id
        wanted = principal_id.strip().lower()
        named = [name for name, m in members.items() if str(m.get("email") or "").strip().lower() == wanted]
        return named[0] if len(named) == 1 else principal_id  # nobody (or two people): remove no one

    def remove_member(self, username: str) -> None:
        """Take a person out of the organisation (and so out of every team); gone already is success."""
        with contextlib.suppress(NotFoundError):
            self._request("DELETE", f"{self._org_path()}/members/{quote(username, safe='')}")

    def remove_team_member(self, team: str, username: str) -> None:
        """Take a person out of one team; not in it (any more) is success."""
        with contextlib.suppress(NotFoundError):
            self._request("DELETE", f"{self._team_members_path(team)}/{quote(username, safe='')}")

    def apply_access_plan(self, plan: AccessPlan) -> Iterator[GrantChange]:
        for change in plan.additions + plan.removals:
            if change.principal.kind == PrincipalKind.GROUP:
                self._change_team_permission(change)
            elif change.principal.kind == PrincipalKind.USER and change.op == ChangeOp.REMOVE:
                self._remove_through_team(change)
            else:
                raise PermanentError(_refusal(change))
            yield change

    def _change_team_permission(self, change: GrantChange) -> None:
        """Set a team's permission on one repository to what it has plus (or minus) the change's actions."""
        team = self._team_named_by(change.principal)
        repository = change.scope
        self._repository_path(repository)  # in the namespace
        if not is_valid_repository_name(repository):
            raise PermanentError(f"Docker Hub gives teams single repositories, not {repository}")
        current = self._team_actions(repository, str(team["name"]))
        wanted = current | set(change.actions) if change.op == ChangeOp.ADD else current - set(change.actions)
        if wanted == current:
            return  # done already: a re-run after a failure
        if not wanted:
            raise PermanentError(
                f"Docker Hub's API cannot take team {team['name']} off {repository} (only giving a "
                "permission is documented); remove it under the repository's Permissions in Docker Hub"
            )
        permission = next((p for p, actions in PERMISSION_ACTIONS.items() if actions == wanted), None)
        if permission is None:
            raise PermanentError(
                f"Docker Hub has no team permission that gives exactly {', '.join(sorted(wanted))} "
                "(read: pull; write: pull, push; admin: pull, push, delete) "
                f"for {team['name']} on {repository}"
            )
        self._request(
            "POST", self._groups_path(repository), json={"group_id": team["id"], "permission": permission}
        )

    def _team_named_by(self, principal: Principal) -> dict[str, Any]:
        # By the team's own id only: a directory group is never matched to a team by name.
        for team in self._pages(f"{self._org_path()}/groups"):
            if _id_text(team.get("id")) == principal.id:
                return team
        raise PermanentError(
            f"no Docker Hub team has the id {principal.id} ({principal.name or 'unnamed'}): Docker Hub "
            "teams carry no directory id, so a directory group's access is given in Docker Hub"
        )

    def _team_actions(self, repository: str, team: str) -> set[str]:
        for entry in self._pages(self._groups_path(repository)):
            if entry.get("group_name") == team:
                return set(PERMISSION_ACTIONS.get(str(entry.get("permission")), ()))
        return set()

    def _remove_through_team(self, change: GrantChange) -> None:
        # People hold access only through teams: taking it means taking them off the team, which
        # takes the team's other repositories too. A part of a team's permission cannot be taken.
        match = TEAM_SOURCE.match(change.source)
        if match is None or not match.group("member"):
            raise PermanentError(_refusal(change))
        if not PERMISSION_ACTIONS[match.group("permission")] <= set(change.actions):
            raise PermanentError(
                f"{change.principal.id} has {match.group('permission')} through team {match.group('team')}: "
                "Docker Hub cannot take part of a team's permission from one member; "
                "move them to another team"
            )
        self.remove_team_member(match.group("team"), change.principal.id)

    # --- paths and times -------------------------------------------------------------------------

    @property
    def _signed_in_with_org_token(self) -> bool:
        return self.config.token.get_secret_value().startswith("dckr_oat_")

    def _namespace_path(self) -> str:
        return f"/v2/namespaces/{quote(self.config.namespace, safe='')}/repositories"

    def _org_path(self) -> str:
        return f"/v2/orgs/{quote(self.config.namespace, safe='')}"

    def _audit_path(self) -> str:
        return f"/v2/auditlogs/{quote(self.config.namespace, safe='')}"

    def _team_members_path(self, team: str) -> str:
        return f"{self._org_path()}/groups/{quote(team, safe='')}/members"

    def _groups_path(self, repository: str) -> str:
        self._repository_path(repository)
        namespace, _, name = repository.partition("/")
        return f"/v2/repositories/{quote(namespace, safe='')}/{quote(name, safe='')}/groups"

    def _repository_path(self, repository: str) -> str:
        namespace, _, name = repository.partition("/")
        if namespace != self.config.namespace or not name:
            raise ConfigError(f"{repository} is not in the namespace {self.config.namespace}")
        return f"{self._namespace_path()}/{quote(name, safe='')}"

    def _note_times(self, repository: str, digest: str, tag: dict[str, Any]) -> None:
        pushed, pulled = parse_rfc3339(tag.get("tag_last_pushed")), parse_rfc3339(tag.get("tag_last_pulled"))
        known_pushed, known_pulled = self._times.get((repository, digest), (None, None))
        self._times[repository, digest] = (_latest(pushed, known_pushed), _latest(pulled, known_pulled))

    # --- HTTP ------------------------------------------------------------------------------------

    @property
    def _session(self) -> OutboundSession:
        session: OutboundSession | None = getattr(self._local, "session", None)
        if session is None:
            session = outbound_session(purpose="docker hub")
            self._local.session = session
        return session

    def _bearer(self, *, renew: bool = False) -> str:
        with self._jwt_lock:
            if renew or self._jwt is None or time.monotonic() - self._jwt[1] > JWT_LIFETIME_SECONDS:
                response = self._session.post(
                    f"{self.config.url}/v2/auth/token",
                    json={"identifier": self.config.username, "secret": self.config.token.get_secret_value()},
                )
                raise_for_status(response)
                token = json_object(response).get("access_token")
                if not isinstance(token, str) or not token:
                    raise AuthError("Docker Hub answered the sign-in without an access token")
                self._jwt = (token, time.monotonic())
            return self._jwt[0]

    def _get(self, path: str, params: dict[str, Any] | None = None) -> requests.Response:
        return self._request("GET", path, params=params)

    def _request(
        self, method: str, path: str, params: dict[str, Any] | None = None, json: Any = None
    ) -> requests.Response:
        url = path if path.startswith("http") else f"{self.config.url}{path}"

        def send(token: str) -> requests.Response:
            return self._session.request(
                method, url, params=params, json=json, headers={"Authorization": f"Bearer {token}"}
            )

        response = send(self._bearer())
        if response.status_code == 401:  # the JWT died early (revoked, clock): one fresh sign-in
            response = send(self._bearer(renew=True))
        raise_for_status(response)
        return response

    def _pages(self, path: str) -> Iterator[dict[str, Any]]:
        """Every result of a paged list, following the `next` URL the Hub gives."""
        url: str | None = path
        params: dict[str, Any] | None = {"page_size": self.config.page_size}
        while url:
            body = json_object(self._get(url, params=params))
            yield from (item for item in body.get("results") or [] if isinstance(item, dict))
            url = self._next_url(body)
            params = None  # the link carries the page and its size

    def _next_url(self, body: dict[str, Any]) -> str | None:
        following = body.get("next")
        return urljoin(self.config.url + "/", following) if isinstance(following, str) and following else None


def _id_text(value: object) -> str:
    # Team ids are JSON numbers (the description says number): 12 and 12.0 are the same team.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _resource_text(resource: Any) -> str:
    if not isinstance(resource, dict):
        return str(resource)
    scopes = ", ".join(str(s) for s in resource.get("scopes") or ())
    return f"{resource.get('path', '')}: {scopes}"


def _resource_scope(resource: Any, namespace: str) -> str:
    """An organisation token's repository resource as a pattern; "" for what is not one of ours."""
    if not isinstance(resource, dict) or resource.get("type") != "TYPE_REPO":
        return ""
    path = str(resource.get("path", "")).lower()
    if not path.startswith(namespace + "/"):
        return ""  # `*/*/public` and other namespaces: open to everyone, or not this registry
    try:
        return compile_pattern(path).text
    except InvalidPattern:
        raise PermanentError(
            f"an organisation token names a resource Customs cannot read: {path!r}"
        ) from None


def _audit_source(actor: str) -> str:
    return f"Docker Hub audit log: {actor}'s pushes and deletes (pulls are not logged)"


def _refusal(change: GrantChange) -> str:
    who = change.principal.name or change.principal.id
    if change.source.startswith("organisation "):
        return f"{who} is an {change.source}: change owners in Docker Hub, Customs does not demote them"
    if change.principal.kind == PrincipalKind.ROBOT:
        return f"{who} is an organisation access token: change its resources in Docker Hub, or disable it"
    return f"Docker Hub cannot {change.op} {', '.join(change.actions)} for {who} on {change.scope} directly"


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return max((moment for moment in (a, b) if moment is not None), default=None)
