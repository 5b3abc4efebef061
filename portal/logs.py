"""Logging filters: the request id on every line, and known secret shapes masked."""

from __future__ import annotations

import logging
import re

from portal import requestid

# Customs secrets (personal cst_…, robot csr_…, SCIM csp_…, webhook crw_…), bearer headers and URL
# userinfo: the shapes a secret takes in a message.
_SECRET_SHAPES = [
    (re.compile(r"(cst|csr|csp|crw)_[A-Za-z0-9_-]{8,}"), r"\1_[redacted]"),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"), r"\1[redacted]"),
    (re.compile(r"(?i)(://[^/\s:@]+:)[^@\s/]+@"), r"\1[redacted]@"),
]


def redact(text: str) -> str:
    for pattern, replacement in _SECRET_SHAPES:
        text = pattern.sub(replacement, text)
    return text


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = requestid.current()
        return True


class RedactSecretsFilter(logging.Filter):
    """Masks secrets in the formatted message; a last line of defence, not a licence to log them."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
