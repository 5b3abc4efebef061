"""Access review campaigns: certify, person by person and credential by credential, who may do what
where, and take away what reviewers revoke.

A campaign's scope is a pattern in the access-rule language, the registries it covers (none: all)
and the actions that matter ("everyone who can push to prod/**"). Opening it builds one item per
subject with access in scope, from the same sources as effective access:

- people, through the access rules in force of the groups they belong to, and through grants a
  registry gives them by name;
- Customs robot tokens, through their group's rules;
- registry-native credentials, through the grants the registry lists for the principal they act as
  (a Harbor robot, an ACR token): a credential whose registry says nothing of its repositories is
  not in any campaign's scope.

Each item keeps its evidence as the reviewer saw it. Reviewers certify or revoke, one by one or a
filtered list at once. Closing gives the undecided items the campaign's default, then makes each
revocation a plan of idempotent steps, applied at once by a worker and recorded per item:

- a group's access is revoked (its rule ended, expiry set to now) when everyone the rule reaches is
  revoked: nobody certified that they still need it;
- otherwise a person is taken out of the group where Customs owns the membership (source local);
  a membership the directory sends (SCIM, OIDC, SAML) comes back at its next sync, so the plan
  leaves that to a person and says where;
- a grant a registry gives a person by name is removed through the connector, where it can;
- a Customs robot token is revoked; a registry credential is disabled through its connector.

The modules, in the order a campaign meets them: scope (patterns and the campaign's reach), subjects
(who and what is reached, with the evidence), reviewers (who reviews each item), campaigns (creating,
opening, repeating), deciding, closing (the default, then the plan), applying (the plan's steps),
reminders and reports; base holds what they all share. Callers import from this package only.
"""

from __future__ import annotations

from registries.reviews.applying import apply, end_rule
from registries.reviews.base import ACTIONS, Campaign, CampaignRefused, Decision, Item
from registries.reviews.campaigns import (
    MONTHS,
    CampaignRequest,
    after_period,
    create_campaign,
    open_campaign,
    start_due_campaigns,
)
from registries.reviews.closing import STEP_LABELS, Step, StepState, close, effective_decision, plan
from registries.reviews.deciding import Decided, decide, may_decide, may_manage, reviewer_ids
from registries.reviews.reminders import REMINDER_DAYS, reminder_stage, send_reminders
from registries.reviews.reports import (
    REPORT_COLUMNS,
    Summary,
    access_summary,
    report_items,
    report_rows,
    summary,
)
from registries.reviews.reviewers import Reviewers, managers_of, reviewers_for
from registries.reviews.scope import Scope, patterns_overlap
from registries.reviews.subjects import MACHINE_PRINCIPALS, Subject, rules_in_scope, subjects_in_scope

__all__ = [
    "ACTIONS",
    "MACHINE_PRINCIPALS",
    "MONTHS",
    "REMINDER_DAYS",
    "REPORT_COLUMNS",
    "STEP_LABELS",
    "Campaign",
    "CampaignRefused",
    "CampaignRequest",
    "Decided",
    "Decision",
    "Item",
    "Reviewers",
    "Scope",
    "Step",
    "StepState",
    "Subject",
    "Summary",
    "access_summary",
    "after_period",
    "apply",
    "close",
    "create_campaign",
    "decide",
    "effective_decision",
    "end_rule",
    "managers_of",
    "may_decide",
    "may_manage",
    "open_campaign",
    "patterns_overlap",
    "plan",
    "reminder_stage",
    "report_items",
    "report_rows",
    "reviewer_ids",
    "reviewers_for",
    "rules_in_scope",
    "send_reminders",
    "start_due_campaigns",
    "subjects_in_scope",
    "summary",
]
