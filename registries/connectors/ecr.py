"""AWS ECR (+ IAM): repositories and images with push and last-pull times, access keys, policies, replication.

ECR is two services and a registry host. The ECR API (JSON protocol, SigV4) lists repositories and
images and knows when each image was pushed and last pulled (`lastRecordedPullTime`, refreshed at
most daily, so approximate); it also holds the repository policies. IAM holds the credentials (users'
access keys, with last use from GetAccessKeyLastUsed) and group membership. The registry host
(`https://<account>.dkr.ecr.<region>.amazonaws.com`) serves `/v2/` behind Basic auth with user `AWS`
and the password inside GetAuthorizationToken's token; manifests and configs are read there by the
distribution connector, so digests are checked as everywhere else and configs (platform, labels,
lineage) are available. BatchGetImage would give manifests but no configs, which ECR keeps as blobs
reachable only through pre-signed layer URLs.

Reading a manifest counts as a pull (`lastRecordedPullTime`) unless the reading principal is on the
registry's pull-time exclusion list (RegisterPullTimeUpdateExclusion); Customs reads a manifest once
per new digest and resolves tags with DescribeImages, never with a pull. See the README.
"""

from __future__ import annotations

import base64
import dataclasses
import fnmatch
import hashlib
import json
import re
import threading
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import unquote

import boto3
from botocore.config import Config
from botocore.credentials import DeferredRefreshableCredentials
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, ParamValidationError
from django.conf import settings
from pydantic import SecretStr, field_validator, model_validator

from portal.http import TransientError
from registries.connectors.base import (
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
    RemoteReplication,
    RemoteRepository,
    RemoteTag,
    ReplicationDirection,
    ReplicationKind,
    ReplicationStatus,
    http_url,
)
from registries.connectors.distribution import DistributionConfig, DistributionConnector
from registries.connectors.errors import (
    AuthError,
    ConnectorError,
    NotFoundError,
    PermanentError,
    RateLimited,
)
from registries.patterns import InvalidPattern, compile_pattern

if TYPE_CHECKING:
    from mypy_boto3_ecr import ECRClient
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_sts import STSClient

# The writes, as IAM's policy simulator names them: what reconcile plans and offboarding call.
POLICY_WRITES = ("ecr:SetRepositoryPolicy", "ecr:DeleteRepositoryPolicy")
KEY_WRITES = ("iam:UpdateAccessKey",)

_REGISTRY_HOST = re.compile(
    r"^https://(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z]{2}(?:-[a-z]+)+-\d)\.amazonaws\.com(?:\.cn)?$"
)
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
_EXTERNAL_ID = re.compile(r"^[\w+=,.@:/-]{2,1224}$")
_ACCOUNT = re.compile(r"^\d{12}$")

# Native ECR actions behind each Customs action. A statement allowing any one of them counts as that
# access (a partial grant is still access); a plan writes and removes the whole set.
NATIVE_ACTIONS: dict[str, tuple[str, ...]] = {
    "pull": ("ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"),
    "push": ("ecr:CompleteLayerUpload", "ecr:InitiateLayerUpload", "ecr:PutImage", "ecr:UploadLayerPart"),
    "delete": ("ecr:BatchDeleteImage",),
}
POLICY_VERSION = "2012-10-17"
KEY_LAST_USED_SOURCE = "IAM GetAccessKeyLastUsed"

_THROTTLED = {
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
}
_DENIED = {
    "AccessDenied",
    "AccessDeniedException",
    "AuthFailure",
    "ExpiredToken",
    "ExpiredTokenException",
    "IncompleteSignature",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "MissingAuthenticationToken",
    "RequestExpired",
    "SignatureDoesNotMatch",
    "UnauthorizedOperation",
    "UnrecognizedClientException",
}
_GONE = {"RepositoryNotFoundException", "ImageNotFoundException", "NoSuchEntity"}
_SERVER = {"ServerException", "InternalFailure", "InternalError", "ServiceUnavailable", "ServiceFailure"}


def _http_url(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    return http_url(value.strip())


class EcrConfig(ConnectorConfig):
    # The registry host, e.g. https://123456789012.dkr.ecr.eu-west-1.amazonaws.com: account and
    # region are read from it; set them explicitly only for a host that does not say (a proxy, a test).
    url: str
    account_id: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    role_arn: str | None = None  # assumed with STS, from the access key or from Customs' own AWS identity
    external_id: str | None = None
    ecr_endpoint_url: str | None = None  # the AWS default when unset; tests point these at a fake
    iam_endpoint_url: str | None = None
    sts_endpoint_url: str | None = None
    max_attempts: int = 3  # per call, botocore "standard" retry mode (throttling and 5xx)
    page_size: int = 100

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return http_url(value)

    @field_validator("ecr_endpoint_url", "iam_endpoint_url", "sts_endpoint_url")
    @classmethod
    def _endpoints(cls, value: str | None) -> str | None:
        return _http_url(value)

    @field_validator("account_id")
    @classmethod
    def _account(cls, value: str | None) -> str | None:
        if value and not _ACCOUNT.match(value.strip()):
            raise ValueError("an AWS account id is 12 digits")
        return value.strip() if value else None

    @field_validator("role_arn")
    @classmethod
    def _role(cls, value: str | None) -> str | None:
        if value and not _ROLE_ARN.match(value.strip()):
            raise ValueError("a role ARN looks like arn:aws:iam::123456789012:role/customs-reader")
        return value.strip() if value else None

    @field_validator("external_id")
    @classmethod
    def _external_id(cls, value: str | None) -> str | None:
        if value and not _EXTERNAL_ID.match(value):
            raise ValueError("an external id is 2 to 1224 letters, digits or +=,.@:/-")
        return value or None

    @field_validator("max_attempts")
    @classmethod
    def _attempts(cls, value: int) -> int:
        if not 1 <= value <= 10:
            raise ValueError("attempts per call must be between 1 and 10")
        return value

    @field_validator("page_size")
    @classmethod
    def _page_size(cls, value: int) -> int:
        if not 1 <= value <= 1000:  # ECR's maxResults range; IAM's MaxItems allows the same
            raise ValueError("page size must be between 1 and 1000")
        return value

    @model_validator(mode="after")
    def _identity(self) -> EcrConfig:
        if bool(self.access_key_id) != bool(self.secret_access_key):
            raise ValueError("an access key needs both its id and its secret")
        if not self.access_key_id and not self.role_arn:
            raise ValueError("give an access key, a role ARN to assume, or both")
        if self.external_id and not self.role_arn:
            raise ValueError("an external id is only used when assuming a role")
        if not (self.aws_account and self.aws_region):
            raise ValueError(
                "the account id and region could not be read from the URL "
                "(https://<account>.dkr.ecr.<region>.amazonaws.com); set them explicitly"
            )
        return self

    @property
    def aws_account(self) -> str:
        match = _REGISTRY_HOST.match(self.url)
        return match["account"] if match else (self.account_id or "")

    @property
    def aws_region(self) -> str:
        # The host wins over the stored region: a replica's connector is built from the same config
        # with the replica's URL, and must then talk to the replica's region.
        match = _REGISTRY_HOST.match(self.url)
        return match["region"] if match else (self.region or "")


@dataclasses.dataclass(frozen=True)
class ReplicationDestination:
    """Where ECR's replication configuration copies images to."""

    region: str
    registry_id: str
    endpoint: str
    repository_filters: tuple[str, ...] = ()  # PREFIX_MATCH filters; empty: every repository


@dataclasses.dataclass(frozen=True)
class _ImageTimes:
    pushed_at: datetime | None
    last_pulled_at: datetime | None


class EcrConnector:
    kind: ClassVar[str] = "ecr"
    label: ClassVar[str] = "AWS ECR"
    config_class: ClassVar[type[ConnectorConfig]] = EcrConfig
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
            Capability.REPLICAS,
            Capability.EVENTS,
            Capability.POSTURE,
        }
    )
    needs: ClassVar[tuple[str, ...]] = (
        "ecr:DescribeRepositories (list repositories)",
        "ecr:DescribeImages (tags, push and last-pull times)",
        "ecr:GetAuthorizationToken, ecr:BatchGetImage and ecr:GetDownloadUrlForLayer "
        "(read manifests and configs over /v2/)",
        "ecr:GetRepositoryPolicy (who may pull, push, delete)",
        "ecr:DescribeRegistry (replication configuration)",
        "iam:ListUsers, iam:ListAccessKeys, iam:GetAccessKeyLastUsed (access keys and their last use)",
        "iam:ListGroups, iam:GetGroup, iam:ListAttachedGroupPolicies, iam:GetPolicy, iam:GetPolicyVersion, "
        "iam:ListGroupPolicies, iam:GetGroupPolicy (group members and their ECR access)",
        "optional, only to apply reconcile plans (a sync needs nothing above this line): "
        "ecr:SetRepositoryPolicy, ecr:DeleteRepositoryPolicy; the check asks IAM's policy simulator "
        "(iam:SimulatePrincipalPolicy) when it may, and otherwise leaves them untried",
        "optional, only to disable access keys at offboarding: iam:UpdateAccessKey, checked the same way",
    )
    # Posture reads beyond `needs` (not tried by the permission check).
    posture_needs: ClassVar[tuple[str, ...]] = (
        "ecr:GetRegistryScanningConfiguration (registry-wide scan on push rules)",
        "iam:GetAccountSummary (whether the root user has access keys)",
    )

    def __init__(self, config: EcrConfig) -> None:
        self.config = config
        self._local = threading.local()
        self._session_lock = threading.Lock()
        self._boto: boto3.Session | None = None
        self._registry_lock = threading.Lock()
        self._registry: DistributionConnector | None = None
        self._times: dict[tuple[str, str], _ImageTimes] = {}
        # Repository policies read_grants fetched, for read_posture in the same sync to use once.
        self._policies: dict[str, dict[str, Any] | None] = {}

    # --- inventory -------------------------------------------------------------------------------

    def check(self) -> None:
        with _aws("ECR DescribeRepositories"):
            self._ecr.describe_repositories(registryId=self.config.aws_account, maxResults=1)
        self._distribution().check()

    def repositories(self) -> Iterator[RemoteRepository]:
        for repository in self._describe_repositories():
            yield RemoteRepository(name=repository["repositoryName"])

    def _describe_repositories(self) -> Iterator[dict[str, Any]]:
        pages = self._ecr.get_paginator("describe_repositories").paginate(
            registryId=self.config.aws_account, PaginationConfig={"PageSize": self.config.page_size}
        )
        with _aws("ECR DescribeRepositories"):
            for page in pages:
                yield from (dict(repository) for repository in page.get("repositories", []))

    def tags(self, repository: str) -> list[RemoteTag]:
        tags = []
        for image in self._images(repository, {"tagStatus": "TAGGED"}):
            digest = image["imageDigest"]
            self._times[repository, digest] = _ImageTimes(
                image.get("imagePushedAt"), image.get("lastRecordedPullTime")
            )
            tags += [RemoteTag(name=tag, digest=digest) for tag in image.get("imageTags", [])]
        return sorted(tags, key=lambda tag: tag.name)

    def resolve(self, repository: str, reference: str) -> str:
        # DescribeImages, not a manifest HEAD: ECR may count a HEAD as a pull.
        key = "imageDigest" if reference.startswith("sha256:") else "imageTag"
        for image in self._images(repository, image_ids=[{key: reference}]):
            return str(image["imageDigest"])
        raise NotFoundError(f"{repository}:{reference} is not in ECR")

    def artifact(self, repository: str, digest: str) -> RemoteArtifact:
        times = self._times.get((repository, digest))
        if times is None:  # a notification, not a listing, brought us here
            for image in self._images(repository, image_ids=[{"imageDigest": digest}]):
                times = _ImageTimes(image.get("imagePushedAt"), image.get("lastRecordedPullTime"))
        record = self._distribution().artifact(repository, digest)
        if times is None:
            return record
        return dataclasses.replace(record, pushed_at=times.pushed_at, last_pulled_at=times.last_pulled_at)

    def _images(
        self,
        repository: str,
        filter: dict[str, Any] | None = None,  # noqa: A002  (ECR's own parameter name)
        image_ids: list[dict[str, str]] | None = None,
    ) -> Iterator[dict[str, Any]]:
        arguments: dict[str, Any] = {"registryId": self.config.aws_account, "repositoryName": repository}
        if image_ids:
            arguments["imageIds"] = image_ids  # maxResults cannot be combined with imageIds
        else:
            arguments["filter"] = filter or {}
            arguments["PaginationConfig"] = {"PageSize": self.config.page_size}
        pages = self._ecr.get_paginator("describe_images").paginate(**arguments)
        with _aws(f"ECR DescribeImages {repository}"):
            for page in pages:
                yield from (dict(image) for image in page.get("imageDetails", []))

    # --- regions ---------------------------------------------------------------------------------

    def replication(self) -> list[ReplicationDestination]:
        """The regions (and accounts) the registry's replication configuration copies images to."""
        with _aws("ECR DescribeRegistry"):
            registry = self._ecr.describe_registry()
        destinations: dict[tuple[str, str], set[str]] = {}
        for rule in registry.get("replicationConfiguration", {}).get("rules", []):
            filters = {f["filter"] for f in rule.get("repositoryFilters", [])}
            for destination in rule.get("destinations", []):
                key = (destination["region"], destination["registryId"])
                # A rule without filters replicates everything; that wins over any prefix list.
                known = destinations.get(key)
                destinations[key] = set() if not filters or known == set() else (known or set()) | filters
        return [
            ReplicationDestination(
                region=region,
                registry_id=account,
                endpoint=f"https://{account}.dkr.ecr.{region}.amazonaws.com",
                repository_filters=tuple(sorted(filters)),
            )
            for (region, account), filters in sorted(destinations.items())
        ]

    def read_replication(self) -> Iterator[RemoteReplication]:
        """Each destination of the replication configuration, as a push replication."""
        for destination in self.replication():
            # Another account's region is named with the account: the same region may appear twice.
            same_account = destination.registry_id == self.config.aws_account
            location = (
                destination.region if same_account else f"{destination.region} ({destination.registry_id})"
            )
            yield RemoteReplication(
                id=f"{destination.region}/{destination.registry_id}",
                name=location,
                kind=ReplicationKind.PUSH_REPLICATION,
                location=location,
                url=destination.endpoint,
                direction=ReplicationDirection.OUTBOUND,
                # DescribeRegistry holds configuration only; ECR reports replication status per image.
                status=ReplicationStatus.UNKNOWN,
                filters=tuple(f"prefix {prefix}" for prefix in destination.repository_filters)
                or ("every repository",),
                trigger="on push",
            )

    # --- posture ---------------------------------------------------------------------------------

    def read_posture(self, production: Collection[str] = ()) -> Iterator[PostureFact]:
        """Root access keys; per repository: scan on push, a policy letting anyone pull, and (for the
        production ones) tag mutability. A private ECR registry has no anonymous access of its own."""
        yield self._root_keys_fact()
        rules = self._scan_on_push_rules()
        for repository in list(self._describe_repositories()):
            name = str(repository["repositoryName"])
            url = self._console_url(f"ecr/repositories/private/{self.config.aws_account}/{name}")
            yield _scan_fact(name, repository, rules, url)
            policy = self._policies.pop(name) if name in self._policies else self._repository_policy(name)
            yield _public_fact(name, policy, url)
            if name in production:
                yield _mutability_fact(name, repository, url)

    def _root_keys_fact(self) -> PostureFact:
        url = self._console_url("iam/home#/security_credentials")
        try:
            with _aws("IAM GetAccountSummary"):
                summary = self._iam.get_account_summary().get("SummaryMap", {})
        except AuthError as exc:
            return PostureFact(PostureCheck.ADMIN_ACCOUNT, PostureState.UNKNOWN, str(exc), "root", url)
        present = summary.get("AccountAccessKeysPresent")
        if present is None:
            evidence = "GetAccountSummary did not report AccountAccessKeysPresent"
            return PostureFact(PostureCheck.ADMIN_ACCOUNT, PostureState.UNKNOWN, evidence, "root", url)
        mfa = "with" if summary.get("AccountMFAEnabled") else "without"
        if present:
            evidence = f"the account's root user has access keys ({mfa} MFA on the root user): delete them"
            return PostureFact(PostureCheck.ADMIN_ACCOUNT, PostureState.FAILING, evidence, "root", url)
        evidence = f"the root user has no access keys ({mfa} MFA on the root user)"
        return PostureFact(PostureCheck.ADMIN_ACCOUNT, PostureState.OK, evidence, "root", url)

    def _scan_on_push_rules(self) -> list[dict[str, Any]]:
        """The registry's scanning rules that scan on push (continuous scanning does too, and more)."""
        with _aws("ECR GetRegistryScanningConfiguration"):
            found = self._ecr.get_registry_scanning_configuration().get("scanningConfiguration", {})
        return [
            dict(rule)
            for rule in found.get("rules", [])
            if rule.get("scanFrequency") in ("SCAN_ON_PUSH", "CONTINUOUS_SCAN")
        ]

    def _console_url(self, page: str) -> str:
        return f"https://console.aws.amazon.com/{page}?region={self.config.aws_region}"

    # --- credentials -----------------------------------------------------------------------------

    def read_credentials(self) -> Iterator[RemoteCredential]:
        for user in self._iam_pages("list_users", "Users"):
            owner = _user_principal(user)
            for key in self._iam_pages("list_access_keys", "AccessKeyMetadata", UserName=user["UserName"]):
                yield self._credential(owner, key)

    def _credential(self, owner: Principal, key: dict[str, Any]) -> RemoteCredential:
        key_id = key["AccessKeyId"]
        with _aws(f"IAM GetAccessKeyLastUsed {key_id}"):
            used = self._iam.get_access_key_last_used(AccessKeyId=key_id).get("AccessKeyLastUsed", {})
        last_used = used.get("LastUsedDate")
        return RemoteCredential(
            kind=CredentialKind.ACCESS_KEY,
            id=key_id,
            name=f"{owner.name} {key_id}",
            enabled=key.get("Status") == "Active",
            owner=owner,
            created_at=key.get("CreateDate"),
            expires_at=None,  # IAM access keys never expire
            expiry_known=True,
            # No LastUsedDate: never used (or only before IAM began tracking, in April 2015).
            last_used_at=last_used,
            usage_known=True,
            last_used_source=KEY_LAST_USED_SOURCE,
            scopes=(f"last used with {used.get('ServiceName')} in {used.get('Region')}",)
            if last_used
            else (),
        )

    def disable_credential(self, credential_id: str) -> None:
        """Set an access key Inactive. UserName is required: without it IAM acts on the caller's own keys."""
        try:
            with _aws(f"IAM GetAccessKeyLastUsed {credential_id}"):
                user = self._iam.get_access_key_last_used(AccessKeyId=credential_id).get("UserName")
        except NotFoundError:
            return  # already deleted: nothing left to disable
        if not user:
            raise PermanentError(f"IAM did not say which user owns access key {credential_id}")
        try:
            with _aws(f"IAM UpdateAccessKey {credential_id}"):
                self._iam.update_access_key(UserName=user, AccessKeyId=credential_id, Status="Inactive")
        except NotFoundError:
            return  # deleted between the two calls

    # --- grants ----------------------------------------------------------------------------------

    def read_grants(self) -> Iterator[RemoteGrant]:
        """Repository policies, then IAM groups' ECR permissions and their members.

        Read: each repository's policy (Allow statements; Deny statements are not subtracted), and each
        IAM group's attached managed and inline policies with the users in the group. Not read: users'
        and roles' own identity policies, the registry policy, SCPs and permission boundaries.
        """
        for repository in self.repositories():
            yield from self._repository_grants(repository.name)
        yield from self._group_grants()

    def _repository_grants(self, repository: str) -> Iterator[RemoteGrant]:
        policy = self._policies[repository] = self._repository_policy(repository)
        for index, statement in enumerate(_statements(policy)):
            if statement.get("Effect") != "Allow" or "NotPrincipal" in statement:
                continue
            actions = _customs_actions(statement)
            if not actions:
                continue
            source = f"repository policy {repository} statement {statement.get('Sid') or index + 1}"
            if statement.get("Condition"):
                source += " (conditional)"
            for principal in _principals(statement.get("Principal")):
                yield RemoteGrant(principal=principal, scope=repository, actions=actions, source=source)

    def _repository_policy(self, repository: str) -> dict[str, Any] | None:
        try:
            with _aws(f"ECR GetRepositoryPolicy {repository}"):
                text = self._ecr.get_repository_policy(
                    registryId=self.config.aws_account, repositoryName=repository
                )["policyText"]
        except NotFoundError as exc:
            if "RepositoryPolicyNotFound" in str(exc):
                return None
            raise
        return _document(text)

    def _group_grants(self) -> Iterator[RemoteGrant]:
        for group in self._iam_pages("list_groups", "Groups"):
            name = group["GroupName"]
            grants = [
                (scope, actions, f"IAM group {name} policy {policy}")
                for policy, document in self._group_policies(name)
                for scope, actions in self._identity_grants(document)
            ]
            if not grants:
                continue
            principal = Principal(kind=PrincipalKind.GROUP, id=group["Arn"], name=name)
            members = [
                _user_principal(user) for user in self._iam_pages("get_group", "Users", GroupName=name)
            ]
            for scope, actions, source in grants:
                yield RemoteGrant(principal=principal, scope=scope, actions=actions, source=source)
                for member in members:
                    yield RemoteGrant(
                        principal=member, scope=scope, actions=actions, source=f"member of {source}"
                    )

    def _group_policies(self, group: str) -> Iterator[tuple[str, dict[str, Any] | None]]:
        for attached in self._iam_pages("list_attached_group_policies", "AttachedPolicies", GroupName=group):
            yield attached["PolicyName"], self._managed_policy(attached["PolicyArn"])
        for name in self._iam_pages("list_group_policies", "PolicyNames", GroupName=group):
            with _aws(f"IAM GetGroupPolicy {group} {name}"):
                document = self._iam.get_group_policy(GroupName=group, PolicyName=name)["PolicyDocument"]
            yield f"{name} (inline)", _document(document)

    def _managed_policy(self, arn: str) -> dict[str, Any] | None:
        cache: dict[str, dict[str, Any] | None] = self._local.__dict__.setdefault("policies", {})
        if arn not in cache:
            with _aws(f"IAM GetPolicy {arn}"):
                version = self._iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
                document = self._iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]
            cache[arn] = _document(document.get("Document"))
        return cache[arn]

    def _identity_grants(self, document: dict[str, Any] | None) -> Iterator[tuple[str, frozenset[str]]]:
        for statement in _statements(document):
            if statement.get("Effect") != "Allow":
                continue
            actions = _customs_actions(statement)
            if not actions:
                continue
            resources = statement.get("Resource", [])
            for scope in sorted({s for r in _as_list(resources) if (s := self._scope_of(r)) is not None}):
                yield scope, actions

    def _scope_of(self, resource: str) -> str | None:
        """An identity policy's Resource as a pattern over this registry's repositories, or None."""
        if resource == "*":
            return "**"
        parts = resource.split(":", 5)
        if len(parts) != 6 or parts[2] != "ecr" or not parts[5].startswith("repository/"):
            return None
        if not fnmatch.fnmatchcase(self.config.aws_region, parts[3] or "*"):
            return None
        if not fnmatch.fnmatchcase(self.config.aws_account, parts[4] or "*"):
            return None
        return _pattern_of(parts[5].removeprefix("repository/"))

    # --- writes: repository policies ---------------------------------------------------------------

    @staticmethod
    def removable(principal_kind: str, source: str) -> bool:
        """Repository policies only: access through an IAM group's policy is changed in IAM."""
        return source.startswith("repository policy ")

    def apply_access_plan(self, plan: AccessPlan) -> Iterator[GrantChange]:
        for change in plan.changes:
            self._apply(change)
            yield change

    def _apply(self, change: GrantChange) -> None:
        if change.source.startswith(("IAM group", "member of IAM group")):
            raise PermanentError(
                f"{change.principal.name or change.principal.id} has this access through an IAM group "
                "policy, which Customs does not edit: change the group in IAM"
            )
        repository = change.scope
        if "*" in repository:
            raise PermanentError(f"ECR repository policies apply to one repository, not {repository}")
        arn = _principal_arn(change.principal)
        native = {a for action in change.actions for a in NATIVE_ACTIONS[action]}
        policy = self._repository_policy(repository) or {"Version": POLICY_VERSION, "Statement": []}
        statements = _statements(policy)
        if change.op == ChangeOp.ADD:
            edited = _with_actions(statements, arn, native)
        else:
            edited = _without_actions(statements, arn, native)
        if edited == statements:
            return  # already as the plan wants: a re-run after a failure changes nothing
        with _aws(f"ECR SetRepositoryPolicy {repository}"):
            if edited:
                self._ecr.set_repository_policy(
                    registryId=self.config.aws_account,
                    repositoryName=repository,
                    policyText=json.dumps({**policy, "Statement": edited}, indent=2),
                )
            else:
                self._ecr.delete_repository_policy(
                    registryId=self.config.aws_account, repositoryName=repository
                )

    # --- permission checks -------------------------------------------------------------------------

    def check_permissions(self) -> list[PermissionCheck]:
        first = self._probe_first_repository()
        checks = [first[0]]
        repository = first[1]
        checks.append(
            self._probe(
                self.needs[1],
                repository,
                lambda name: self._ecr.describe_images(
                    registryId=self.config.aws_account, repositoryName=name, maxResults=1
                ),
            )
        )
        checks.append(self._probe_registry_host())
        checks.append(self._probe(self.needs[3], repository, self._repository_policy))
        checks.append(self._probe(self.needs[4], "", lambda _: self._ecr.describe_registry()))
        users: list[str] = []
        checks.append(self._probe(self.needs[5], "", lambda _: users.extend(self._probe_keys())))
        checks.append(self._probe(self.needs[6], "", lambda _: list(self._group_grants())))
        return checks + self._write_checks(repository, users[0] if users else None)

    def _probe_first_repository(self) -> tuple[PermissionCheck, str | None]:
        try:
            with _aws("ECR DescribeRepositories"):
                found = self._ecr.describe_repositories(registryId=self.config.aws_account, maxResults=1)
        except ConnectorError as exc:
            return PermissionCheck(self.needs[0], ok=False, detail=str(exc)), None
        names = [r["repositoryName"] for r in found.get("repositories", [])]
        return PermissionCheck(self.needs[0], ok=True), (names[0] if names else None)

    def _probe(self, need: str, repository: str | None, call: Any) -> PermissionCheck:
        if repository is None:
            return PermissionCheck(need, ok=True, detail="no repository to try yet")
        try:
            with _aws(need.split(" ", 1)[0]):
                call(repository)
        except ConnectorError as exc:
            return PermissionCheck(need, ok=False, detail=str(exc))
        return PermissionCheck(need, ok=True, detail=f"tried on {repository}" if repository else "")

    def _probe_registry_host(self) -> PermissionCheck:
        try:
            self._distribution().check()
        except ConnectorError as exc:
            return PermissionCheck(self.needs[2], ok=False, detail=str(exc))
        return PermissionCheck(self.needs[2], ok=True, detail=f"signed in to {self.config.url}/v2/")

    def _probe_keys(self) -> list[str]:
        """Read one user's keys and their last use; returns the user's ARN (none: no user to try)."""
        with _aws("IAM ListUsers"):
            users = self._iam.list_users(MaxItems=1).get("Users", [])
        for user in users:
            with _aws("IAM ListAccessKeys"):
                keys = self._iam.list_access_keys(UserName=user["UserName"]).get("AccessKeyMetadata", [])
            for key in keys[:1]:
                with _aws("IAM GetAccessKeyLastUsed"):
                    self._iam.get_access_key_last_used(AccessKeyId=key["AccessKeyId"])
        return [user["Arn"] for user in users]

    def _write_checks(self, repository: str | None, user_arn: str | None) -> list[PermissionCheck]:
        """The writes, asked of IAM's policy simulator: no write can be tried harmlessly on AWS itself.

        Simulated on the first repository and user the reads found, so a write allowed on only some
        repositories or users may read as denied; the detail names what was simulated.
        """
        where = f"arn:aws:ecr:{self.config.aws_region}:{self.config.aws_account}:repository/{repository}"
        try:
            principal = self._principal_arn()
        except ConnectorError as exc:
            return [
                _untried(need, f"who these credentials are is unknown ({exc})") for need in self.needs[7:]
            ]
        return [
            self._simulate(self.needs[7], principal, POLICY_WRITES, where if repository else "*"),
            self._simulate(self.needs[8], principal, KEY_WRITES, user_arn or "*"),
        ]

    def _simulate(
        self, need: str, principal: str, actions: tuple[str, ...], resource: str
    ) -> PermissionCheck:
        try:
            with _aws("IAM SimulatePrincipalPolicy"):
                results = self._iam.simulate_principal_policy(
                    PolicySourceArn=principal, ActionNames=list(actions), ResourceArns=[resource]
                ).get("EvaluationResults", [])
        except ConnectorError as exc:
            return _untried(need, f"IAM's policy simulator did not answer ({exc})")
        decisions = {result["EvalActionName"]: result["EvalDecision"] for result in results}
        denied = [action for action in actions if decisions.get(action) != "allowed"]
        detail = f"simulated for {principal} on {resource}"
        if denied:
            return PermissionCheck(
                need, ok=False, required=False, detail=f"{detail}: {', '.join(denied)} denied"
            )
        return PermissionCheck(need, ok=True, required=False, detail=detail)

    def _principal_arn(self) -> str:
        """The IAM identity whose policies decide: the role assumed, else the access key's user."""
        if self.config.role_arn:
            return self.config.role_arn
        with _aws("STS GetCallerIdentity"):
            return str(self._sts.get_caller_identity()["Arn"])

    # --- AWS clients ---------------------------------------------------------------------------------

    @property
    def _ecr(self) -> ECRClient:
        return self._client("ecr", self.config.ecr_endpoint_url)  # type: ignore[no-any-return]

    @property
    def _iam(self) -> IAMClient:
        return self._client("iam", self.config.iam_endpoint_url)  # type: ignore[no-any-return]

    @property
    def _sts(self) -> STSClient:
        return self._client("sts", self.config.sts_endpoint_url)  # type: ignore[no-any-return]

    def _iam_pages(self, operation: str, key: str, **arguments: Any) -> Iterator[Any]:
        pages = self._iam.get_paginator(operation).paginate(  # type: ignore[call-overload]
            **arguments, PaginationConfig={"PageSize": self.config.page_size}
        )
        with _aws(f"IAM {operation}"):
            for page in pages:
                yield from page.get(key, [])

    def _client(self, service: str, endpoint: str | None) -> Any:
        # botocore clients are thread-safe but their sessions are not: one client per thread and service.
        clients: dict[str, Any] = self._local.__dict__.setdefault("clients", {})
        if service not in clients:
            clients[service] = self._session().client(
                service,  # type: ignore[call-overload]
                endpoint_url=endpoint,
                config=client_config(self.config),
                verify=settings.OUTBOUND_CA_BUNDLE or None,
            )
        return clients[service]

    def _session(self) -> boto3.Session:
        with self._session_lock:
            if self._boto is None:
                self._boto = aws_session(self.config)
            return self._boto

    def _distribution(self) -> DistributionConnector:
        """The /v2/ reader, signed in with the password from GetAuthorizationToken (valid 12 hours)."""
        with self._registry_lock:
            if self._registry is None:
                with _aws("ECR GetAuthorizationToken"):
                    data = self._ecr.get_authorization_token()["authorizationData"]
                if not data:
                    raise AuthError("ECR GetAuthorizationToken answered without a token")
                user, _, password = base64.b64decode(data[0]["authorizationToken"]).decode().partition(":")
                self._registry = DistributionConnector(
                    DistributionConfig(url=self.config.url, username=user, password=SecretStr(password))
                )
            return self._registry


# --- building boto3 sessions and clients (the one place the SDK is configured) -----------------------


def client_config(config: EcrConfig) -> Config:
    """Timeouts, proxy and user agent as portal.http sets them; retries in botocore's standard mode.

    botocore retries throttling and 5xx per request, with its own back-off: a paginated listing
    goes on from the page that was throttled. A page still throttled after `max_attempts` raises
    RateLimited, and the sync task comes back later (AWS sends no Retry-After to wait for).
    """
    from portal import __version__

    return Config(
        region_name=config.aws_region,
        retries={"mode": "standard", "total_max_attempts": config.max_attempts},
        connect_timeout=settings.OUTBOUND_TIMEOUT,
        read_timeout=settings.OUTBOUND_TIMEOUT,
        proxies=settings.OUTBOUND_PROXIES or None,
        user_agent_extra=f"Customs/{__version__} (ecr)",
    )


def aws_session(config: EcrConfig) -> boto3.Session:
    """A boto3 session with the configured access key, or one that assumes the configured role."""
    if config.access_key_id and config.secret_access_key:
        base = boto3.Session(
            aws_access_key_id=config.access_key_id,
            aws_secret_access_key=config.secret_access_key.get_secret_value(),
            region_name=config.aws_region,
        )
    else:
        # Only a role ARN: assume it from Customs' own AWS identity (instance role, web identity).
        base = boto3.Session(region_name=config.aws_region)
    if not config.role_arn:
        return base
    sts: STSClient = base.client(
        "sts",
        endpoint_url=config.sts_endpoint_url,
        config=client_config(config),
        verify=settings.OUTBOUND_CA_BUNDLE or None,
    )
    credentials = DeferredRefreshableCredentials(
        refresh_using=lambda: _assume(sts, config), method="assume-role"
    )
    assumed = boto3.Session(region_name=config.aws_region)
    # boto3 has no public setter for refreshable credentials; botocore's own AssumeRole provider does this.
    assumed._session._credentials = credentials  # type: ignore[attr-defined]
    return assumed


def _assume(sts: STSClient, config: EcrConfig) -> dict[str, str]:
    arguments: dict[str, Any] = {"RoleArn": config.role_arn, "RoleSessionName": "customs"}
    if config.external_id:
        arguments["ExternalId"] = config.external_id
    with _aws(f"STS AssumeRole {config.role_arn}"):
        issued = sts.assume_role(**arguments)["Credentials"]
    return {
        "access_key": issued["AccessKeyId"],
        "secret_key": issued["SecretAccessKey"],
        "token": issued["SessionToken"],
        "expiry_time": issued["Expiration"].isoformat(),
    }


@contextmanager
def _aws(what: str) -> Iterator[None]:
    """Turn botocore's exceptions into the connector taxonomy, by error code."""
    try:
        yield
    except ClientError as exc:
        raise classify(exc, what) from None
    except NoCredentialsError:
        raise AuthError(f"{what}: no AWS credentials to sign with") from None
    except ParamValidationError as exc:
        raise PermanentError(f"{what}: {exc}") from None
    except BotoCoreError as exc:
        # Connection refused or reset, timeouts, unparseable answers: worth another try later.
        raise TransientError(f"{what}: {type(exc).__name__}") from None


def classify(exc: ClientError, what: str) -> ConnectorError:
    error = exc.response.get("Error", {})
    code, message = str(error.get("Code", "")), str(error.get("Message", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    text = f"{what}: {code} {message}".rstrip()
    if code in _THROTTLED or status == 429:
        return RateLimited(text)  # AWS sends no Retry-After: the caller backs off exponentially
    if code in _DENIED or status in (401, 403):
        return AuthError(text)
    if code in _GONE or code == "RepositoryPolicyNotFoundException":
        return NotFoundError(text)
    if code in _SERVER or status >= 500:
        return TransientError(text)
    return PermanentError(text)


# --- posture -------------------------------------------------------------------------------------------


def _untried(need: str, why: str) -> PermissionCheck:
    return PermissionCheck(
        need,
        ok=False,
        required=False,
        tried=False,
        detail=f"not tried: {why}; needed only when Customs writes",
    )


def _scan_fact(name: str, repository: dict[str, Any], rules: list[dict[str, Any]], url: str) -> PostureFact:
    """Scan on push from a registry scanning rule whose wildcard filter takes the repository, else
    from the repository's own (older) imageScanningConfiguration."""
    for rule in rules:
        for entry in rule.get("repositoryFilters", []):
            if fnmatch.fnmatchcase(name, str(entry.get("filter", ""))):
                evidence = f"the registry's {rule['scanFrequency']} rule for {entry['filter']} scans it"
                return PostureFact(PostureCheck.SCAN_ON_PUSH_OFF, PostureState.OK, evidence, name, url)
    if (repository.get("imageScanningConfiguration") or {}).get("scanOnPush"):
        evidence = "imageScanningConfiguration.scanOnPush is true"
        return PostureFact(PostureCheck.SCAN_ON_PUSH_OFF, PostureState.OK, evidence, name, url)
    evidence = "scanOnPush is false and no registry scanning rule takes this repository"
    return PostureFact(PostureCheck.SCAN_ON_PUSH_OFF, PostureState.FAILING, evidence, name, url)


def _public_fact(name: str, policy: dict[str, Any] | None, url: str) -> PostureFact:
    """A repository policy statement letting any AWS principal ("*") pull, without a condition."""
    for index, statement in enumerate(_statements(policy)):
        everyone = any(p.id == "*" for p in _principals(statement.get("Principal")))
        if statement.get("Effect") != "Allow" or not everyone or "pull" not in _customs_actions(statement):
            continue
        sid = statement.get("Sid") or index + 1
        if statement.get("Condition"):
            evidence = f"policy statement {sid} lets any principal pull, under a condition"
            return PostureFact(PostureCheck.PUBLIC_REPOSITORY, PostureState.OK, evidence, name, url)
        evidence = f"policy statement {sid} lets any AWS principal pull, with no condition"
        return PostureFact(PostureCheck.PUBLIC_REPOSITORY, PostureState.FAILING, evidence, name, url)
    evidence = "no policy statement lets any principal pull" if policy else "no repository policy"
    return PostureFact(PostureCheck.PUBLIC_REPOSITORY, PostureState.OK, evidence, name, url)


def _mutability_fact(name: str, repository: dict[str, Any], url: str) -> PostureFact:
    mutability = str(repository.get("imageTagMutability") or "")
    filters = ", ".join(
        str(f.get("filter")) for f in repository.get("imageTagMutabilityExclusionFilters") or []
    )
    if mutability == "IMMUTABLE":
        return PostureFact(
            PostureCheck.TAG_MUTABLE, PostureState.OK, "imageTagMutability IMMUTABLE", name, url
        )
    if mutability == "IMMUTABLE_WITH_EXCLUSION":
        evidence = f"imageTagMutability IMMUTABLE, except tags matching {filters or 'the exclusion filters'}"
        return PostureFact(PostureCheck.TAG_MUTABLE, PostureState.OK, evidence, name, url)
    if mutability in ("MUTABLE", "MUTABLE_WITH_EXCLUSION"):
        evidence = f"imageTagMutability {mutability}" + (
            f": only tags matching {filters} are kept" if filters else ""
        )
        return PostureFact(PostureCheck.TAG_MUTABLE, PostureState.FAILING, evidence, name, url)
    evidence = "DescribeRepositories did not report imageTagMutability"
    return PostureFact(PostureCheck.TAG_MUTABLE, PostureState.UNKNOWN, evidence, name, url)


# --- policy documents ----------------------------------------------------------------------------------


def _document(value: object) -> dict[str, Any] | None:
    # IAM sends documents URL-encoded (botocore usually decodes them); ECR sends plain JSON text.
    if isinstance(value, dict):
        return value
    if not isinstance(value, str) or not value:
        return None
    text = value if value.lstrip().startswith("{") else unquote(value)
    try:
        loaded = json.loads(text)
    except ValueError:
        raise PermanentError("AWS returned a policy document that is not JSON") from None
    return loaded if isinstance(loaded, dict) else None


def _statements(document: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not document:
        return []
    return [s for s in _as_list(document.get("Statement")) if isinstance(s, dict)]


def _as_list(value: object) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _allows(patterns: Iterable[str], action: str) -> bool:
    # IAM action names are case-insensitive; `*` and `?` are wildcards.
    return any(fnmatch.fnmatchcase(action.lower(), str(p).lower()) for p in patterns)


def _customs_actions(statement: dict[str, Any]) -> frozenset[str]:
    if "NotAction" in statement:
        excluded = _as_list(statement["NotAction"])
        allowed = [a for natives in NATIVE_ACTIONS.values() for a in natives if not _allows(excluded, a)]
    else:
        patterns = _as_list(statement.get("Action"))
        allowed = [a for natives in NATIVE_ACTIONS.values() for a in natives if _allows(patterns, a)]
    return frozenset(action for action, natives in NATIVE_ACTIONS.items() if set(natives) & set(allowed))


def _principals(value: object) -> list[Principal]:
    if value == "*":
        return [_aws_principal("*")]
    if not isinstance(value, dict):
        return []
    found = [_aws_principal(str(p)) for p in _as_list(value.get("AWS"))]
    found += [
        Principal(kind=PrincipalKind.OTHER, id=str(p), name=str(p)) for p in _as_list(value.get("Service"))
    ]
    found += [
        Principal(kind=PrincipalKind.OTHER, id=str(p), name=str(p)) for p in _as_list(value.get("Federated"))
    ]
    return found


def _aws_principal(value: str) -> Principal:
    """A policy's AWS principal; an account id is written as its root ARN so both spellings compare equal."""
    if value == "*":
        return Principal(kind=PrincipalKind.OTHER, id="*", name="any AWS principal")
    if _ACCOUNT.match(value):
        value = f"arn:aws:iam::{value}:root"
    parts = value.split(":", 5)
    if len(parts) != 6:
        return Principal(kind=PrincipalKind.OTHER, id=value, name=value)  # a deleted principal's unique id
    account, resource = parts[4], parts[5]
    if resource == "root":
        return Principal(kind=PrincipalKind.OTHER, id=value, name=f"account {account}")
    kind, _, path = resource.partition("/")
    name = path.rsplit("/", 1)[-1]
    if kind == "user":
        return Principal(kind=PrincipalKind.USER, id=value, name=name)
    if kind == "assumed-role":
        return Principal(kind=PrincipalKind.SERVICE_ACCOUNT, id=value, name=path.split("/", 1)[0])
    if kind == "role":
        return Principal(kind=PrincipalKind.SERVICE_ACCOUNT, id=value, name=name)
    return Principal(kind=PrincipalKind.OTHER, id=value, name=name or value)


def _user_principal(user: dict[str, Any]) -> Principal:
    # IAM users carry no directory id or e-mail: owners stay raw references until mapped by hand.
    return Principal(kind=PrincipalKind.USER, id=user["Arn"], name=user["UserName"])


def _principal_arn(principal: Principal) -> str:
    if principal.id == "*":
        return "*"
    if _ACCOUNT.match(principal.id):
        return f"arn:aws:iam::{principal.id}:root"
    if principal.id.startswith("arn:aws") and (":iam::" in principal.id or ":sts::" in principal.id):
        return principal.id
    # Additions from access rules name directory groups, which AWS cannot put in a resource policy.
    raise PermanentError(
        f"ECR repository policies name AWS principals (user, role or account ARNs); "
        f"{principal.kind} {principal.name or principal.id} has none"
    )


def _pattern_of(name: str) -> str:
    """An ECR ARN's repository glob as an access-rule pattern; AWS's `*` also crosses '/'."""
    name = name.replace("?", "*")
    prefix, star, _ = name.partition("*")
    if not star:
        pattern = name
    elif not prefix or prefix.endswith("/"):
        pattern = prefix + "**"
    else:
        pattern = prefix + "*"  # team/app-* also matches team/app-x/y in AWS; nested names are rare
    try:
        return compile_pattern(pattern).text
    except InvalidPattern:
        return "**"  # a glob the pattern language cannot say: report the widest reading, not none


def _names(statement: dict[str, Any]) -> list[str]:
    principal = statement.get("Principal")
    if principal == "*":
        return ["*"]
    if not isinstance(principal, dict):
        return []
    return [_aws_principal(str(p)).id for p in _as_list(principal.get("AWS"))]


def _statement_sid(arn: str) -> str:
    # Sids allow letters and digits only; one Customs statement per principal keeps edits contained.
    return "Customs" + hashlib.sha256(arn.encode()).hexdigest()[:16]


def _with_actions(statements: list[dict[str, Any]], arn: str, native: set[str]) -> list[dict[str, Any]]:
    """Statements where `arn` is allowed `native` unconditionally; untouched if already so."""
    granted = set()
    for statement in statements:
        if statement.get("Effect") == "Allow" and not statement.get("Condition") and arn in _names(statement):
            granted |= {a for a in native if _allows(_as_list(statement.get("Action")), a)}
    missing = native - granted
    if not missing:
        return statements
    sid = _statement_sid(arn)
    edited = [dict(s) for s in statements]
    for statement in edited:
        if statement.get("Sid") == sid:
            statement["Action"] = sorted(set(_as_list(statement.get("Action"))) | missing)
            return edited
    principal = "*" if arn == "*" else {"AWS": arn}
    return [*edited, {"Sid": sid, "Effect": "Allow", "Principal": principal, "Action": sorted(missing)}]


def _without_actions(statements: list[dict[str, Any]], arn: str, native: set[str]) -> list[dict[str, Any]]:
    """Statements where `arn` is no longer allowed `native`; statements for others stay as they were."""
    edited: list[dict[str, Any]] = []
    for statement in statements:
        names = _names(statement)
        actions = _as_list(statement.get("Action"))
        if (
            statement.get("Effect") != "Allow"
            or arn not in names
            or not any(_allows(actions, a) for a in native)
        ):
            edited.append(statement)
            continue
        kept = _remaining(actions, native)
        principal = statement["Principal"] if isinstance(statement.get("Principal"), dict) else {}
        others = [n for n in _as_list(principal.get("AWS")) if _aws_principal(str(n)).id != arn]
        if others:  # the statement also names others: they keep it whole, the principal gets its own copy
            edited.append({**statement, "Principal": {**statement["Principal"], "AWS": others}})
        if kept:
            principal = "*" if arn == "*" else {"AWS": arn}
            edited.append({**statement, "Principal": principal, "Action": kept})
    return edited


def _remaining(actions: list[Any], removed: set[str]) -> list[str]:
    """A statement's actions without `removed`; a wildcard becomes the Customs actions it still gives."""
    plain = [str(a) for a in actions if "*" not in str(a) and "?" not in str(a)]
    if len(plain) == len(actions):
        return [a for a in plain if not _allows(removed, a)]
    # ecr:* (or ecr:Batch*) also covers metadata reads Customs does not track; they go with the edit.
    expanded = {a for natives in NATIVE_ACTIONS.values() for a in natives if _allows(actions, a)}
    return sorted((expanded | set(plain)) - {a for a in expanded | set(plain) if _allows(removed, a)})
