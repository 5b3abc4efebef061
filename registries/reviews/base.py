"""What every part of an access review shares: the models' short names, the refusal, the date format."""

from __future__ import annotations

from datetime import datetime

from portal.errors import RequestRejected
from registries.models import AccessReviewCampaign, AccessReviewItem, AccessRule

Campaign = AccessReviewCampaign
Item = AccessReviewItem
Decision = AccessReviewCampaign.Decision
ACTIONS = AccessRule.ACTIONS


class CampaignRefused(RequestRejected):
    """A campaign change that cannot be made, with the reason for the person asking."""


def iso_or_none(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
