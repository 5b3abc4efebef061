"""Notices: digests by e-mail, Slack and Teams, and owner notices before expiry, each sent once.

Webhooks are posted to a real HTTP server on loopback; e-mail goes to Django's locmem outbox.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections import deque
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_network
from typing import Any

import jsonschema
import pytest
from django.core import mail
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.template.loader import render_to_string
from django.utils import timezone

from accounts.models import User
from portal import findings, notify
from portal.audit import AuditAction
from portal.findings import FindingKind, Observation, Severity
from portal.models import AuditEvent, Finding, Notice
from registries import hygiene
from tests import factories

pytestmark = pytest.mark.django_db

SITE = "https://customs.example.test"
DIGEST_TO = "security@example.test"
# The secret parts of the webhook URLs, as Slack and Teams put them in the path.
SLACK_SECRET = "xoxSECRETslackTOKEN0123456789"
TEAMS_SECRET = "teamsSECRETsig0123456789abcdef"
SLACK_PATH = f"/services/T0001/B0001/{SLACK_SECRET}"
TEAMS_PATH = f"/webhookb2/{TEAMS_SECRET}/IncomingWebhook/0a1b"

# Not registered: reconcile() takes the kind itself, and the suite's KINDS stays as the code defines it.
DRIFT = FindingKind("test_notify_drift", Severity.HIGH, "Test drift", "For notification tests.")


# --- a webhook receiver on loopback --------------------------------------------------------------


class WebhookServer:
    """Records every POST by path and answers with queued statuses (200 once the queue is empty)."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.answers: deque[int] = deque()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with outer._lock:
                    outer.posts.append((self.path, json.loads(body)))
                    status = outer.answers.popleft() if outer.answers else 200
                # Echo the path on failure, as some servers do: it must not reach the ledger.
                reply = b"ok" if status < 300 else f"no such hook {self.path}".encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def to(self, path: str) -> list[dict[str, Any]]:
        return [body for posted, body in self.posts if posted == path]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def hooks() -> Iterator[WebhookServer]:
    server = WebhookServer()
    yield server
    server.stop()


@pytest.fixture
def configured(settings: Any, hooks: WebhookServer) -> Any:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SITE_URL = SITE
    settings.NOTIFY_DIGEST_EMAILS = [DIGEST_TO]
    settings.NOTIFY_SLACK_WEBHOOKS = [hooks.base + SLACK_PATH]
    settings.NOTIFY_TEAMS_WEBHOOKS = [hooks.base + TEAMS_PATH]
    settings.NOTIFY_MIN_SEVERITY = "medium"
    settings.NOTIFY_OWNERS_OF_EXPIRING = True
    return settings


T0 = timezone.now().replace(microsecond=0)


def _at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def _mail_server_down(settings: Any) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    # factories.CLOSED_ENDPOINT's port: nothing listens there, so the connection is refused at once.
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_USE_TLS = "127.0.0.1", 9, False


def _mail_server_up(settings: Any) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


def _finding(**fields: Any) -> Finding:
    fields.setdefault("opened_at", T0)
    fields.setdefault("first_seen", fields["opened_at"])
    return factories.finding(**fields)


def _html(message: EmailMessage) -> str:
    """The HTML alternative of a sent e-mail (there is exactly one)."""
    assert isinstance(message, EmailMultiAlternatives)
    [(html, mimetype)] = message.alternatives
    assert mimetype == "text/html"
    return str(html)


def _slack_text(payload: dict[str, Any]) -> str:
    return json.dumps(payload["blocks"], ensure_ascii=False)


# --- once per episode, on every channel -----------------------------------------------------------


def test_a_new_finding_goes_out_once_on_every_channel(configured: Any, hooks: WebhookServer) -> None:
    finding = _finding(summary="robot$ci can push to prod/*")
    assert notify.send_pending(now=_at(0)) == notify.NoticeResult(sent=3)
    assert len(hooks.to(SLACK_PATH)) == len(hooks.to(TEAMS_PATH)) == len(mail.outbox) == 1
    assert mail.outbox[0].to == [DIGEST_TO]
    assert "robot$ci can push to prod/*" in mail.outbox[0].body
    assert set(Notice.objects.values_list("channel", flat=True)) == {"email", "slack", "teams"}
    assert all(list(n.findings.all()) == [finding] for n in Notice.objects.all())

    assert notify.send_pending(now=_at(5)) == notify.NoticeResult()
    assert notify.send_pending(now=_at(600)) == notify.NoticeResult()
    assert len(hooks.posts) == 2
    assert len(mail.outbox) == 1
    assert AuditEvent.objects.filter(action=AuditAction.NOTICE_SENT).count() == 3


def test_only_findings_not_yet_told_go_into_the_next_digest(configured: Any, hooks: WebhookServer) -> None:
    _finding(summary="first")
    notify.send_pending(now=_at(0))
    _finding(summary="second", opened_at=_at(10))
    notify.send_pending(now=_at(10))
    second = _slack_text(hooks.to(SLACK_PATH)[1])
    assert "second" in second
    assert "first" not in second
    assert "first" not in mail.outbox[1].body


def test_a_resolved_finding_that_comes_back_is_told_again(configured: Any, hooks: WebhookServer) -> None:
    seen = [Observation(subject_key="registry-1/robot", summary="robot$ci can push without a rule")]
    findings.reconcile(DRIFT, seen, now=_at(0))
    notify.send_pending(now=_at(0))
    findings.reconcile(DRIFT, [], now=_at(60))  # resolved
    assert notify.send_pending(now=_at(60)) == notify.NoticeResult()
    findings.reconcile(DRIFT, seen, now=_at(120))  # back: a new episode
    assert notify.send_pending(now=_at(120)) == notify.NoticeResult(sent=3)
    assert len(hooks.to(SLACK_PATH)) == 2
    assert len(mail.outbox) == 2
    assert notify.send_pending(now=_at(180)) == notify.NoticeResult()


def test_suppressed_findings_are_not_told_until_the_suppression_ends(
    configured: Any, hooks: WebhookServer
) -> None:
    _finding(suppressed_until=_at(60), suppression_justification="accepted until the migration")
    assert notify.send_pending(now=_at(0)) == notify.NoticeResult()
    assert hooks.posts == []
    assert mail.outbox == []
    assert not Notice.objects.exists()
    assert notify.send_pending(now=_at(61)) == notify.NoticeResult(sent=3)


def test_resolved_findings_are_not_told(configured: Any, hooks: WebhookServer) -> None:
    _finding(resolved_at=_at(0))
    assert notify.send_pending(now=_at(1)) == notify.NoticeResult()
    assert hooks.posts == []


def test_findings_below_the_minimum_severity_are_not_told(configured: Any, hooks: WebhookServer) -> None:
    _finding(severity=Severity.LOW, summary="low one")
    _finding(severity=Severity.MEDIUM, summary="medium one")
    notify.send_pending(now=_at(0))
    text = _slack_text(hooks.to(SLACK_PATH)[0])
    assert "medium one" in text
    assert "low one" not in text

    configured.NOTIFY_MIN_SEVERITY = "low"
    notify.send_pending(now=_at(1))
    assert "low one" in _slack_text(hooks.to(SLACK_PATH)[1])


def test_nothing_is_sent_with_nothing_configured(configured: Any, hooks: WebhookServer) -> None:
    configured.NOTIFY_DIGEST_EMAILS = configured.NOTIFY_SLACK_WEBHOOKS = configured.NOTIFY_TEAMS_WEBHOOKS = []
    _finding()
    assert notify.send_pending(now=_at(0)) == notify.NoticeResult()
    assert not Notice.objects.exists()


# --- failures and retries ----------------------------------------------------------------------


def test_a_failed_webhook_is_retried_with_the_same_findings_and_never_duplicated(
    configured: Any, hooks: WebhookServer
) -> None:
    configured.NOTIFY_TEAMS_WEBHOOKS = []
    _finding(summary="first")
    hooks.answers.append(500)
    assert notify.send_pending(now=_at(0)) == notify.NoticeResult(sent=1, failed=1)
    failed = Notice.objects.get(channel="slack")
    assert (failed.sent_at, failed.attempts) == (None, 1)
    assert failed.error.startswith("HTTP 500")

    _finding(summary="second", opened_at=_at(0.5))
    # Before its back-off has passed the failed notice waits; the new finding gets a digest of its own.
    assert notify.send_pending(now=_at(0.5)) == notify.NoticeResult(sent=2)
    assert "second" in _slack_text(hooks.to(SLACK_PATH)[-1])

    assert notify.send_pending(now=_at(2)) == notify.NoticeResult(sent=1)
    retried = _slack_text(hooks.to(SLACK_PATH)[-1])
    assert "first" in retried
    assert "second" not in retried
    failed.refresh_from_db()
    assert (failed.sent_at, failed.attempts, failed.error) == (_at(2), 2, "")

    assert notify.send_pending(now=_at(600)) == notify.NoticeResult()
    bodies = [_slack_text(body) for body in hooks.to(SLACK_PATH)]
    assert sum("first" in body for body in bodies) == 2  # the refused post and the one that went through
    assert len(mail.outbox) == 2


def test_retries_back_off_and_end(configured: Any, hooks: WebhookServer) -> None:
    configured.NOTIFY_DIGEST_EMAILS = configured.NOTIFY_TEAMS_WEBHOOKS = []
    _finding()
    hooks.answers.extend([503] * notify.MAX_ATTEMPTS)
    minute = 0.0
    for attempt in range(notify.MAX_ATTEMPTS):
        minute = notify.retry_delay(attempt) / timedelta(minutes=1)
        assert notify.send_pending(now=_at(minute)) == notify.NoticeResult(failed=1)
    assert len(hooks.posts) == notify.MAX_ATTEMPTS
    assert notify.send_pending(now=_at(minute + 10_000)) == notify.NoticeResult()
    assert len(hooks.posts) == notify.MAX_ATTEMPTS
    assert Notice.objects.get().attempts == notify.MAX_ATTEMPTS
    assert notify.recent_notices(5)[0].state == "gave up"


def test_a_webhook_that_does_not_answer_is_a_failure(configured: Any) -> None:
    configured.NOTIFY_DIGEST_EMAILS = configured.NOTIFY_TEAMS_WEBHOOKS = []
    stalled = socket.create_server(("127.0.0.1", 0))  # accepts the connection, never answers
    configured.NOTIFY_SLACK_WEBHOOKS = [f"http://127.0.0.1:{stalled.getsockname()[1]}{SLACK_PATH}"]
    configured.OUTBOUND_TIMEOUT = 0.3
    _finding()
    with stalled:
        assert notify.send_pending(now=_at(0)) == notify.NoticeResult(failed=1)
    assert Notice.objects.get().error == "timed out"


def test_webhooks_go_through_the_guarded_session(configured: Any, hooks: WebhookServer) -> None:
    configured.NOTIFY_DIGEST_EMAILS = configured.NOTIFY_TEAMS_WEBHOOKS = []
    # Loopback stands in for a metadata service: the deny list applies to webhook URLs too.
    configured.OUTBOUND_DENY_NETWORKS = (ip_network("127.0.0.0/8"),)
    _finding()
    assert notify.send_pending(now=_at(0)) == notify.NoticeResult(failed=1)
    assert Notice.objects.get().error == (
        "refused: the webhook's address is in CUSTOMS_OUTBOUND_DENY_NETWORKS"
    )
    assert hooks.posts == []


def test_a_mail_server_failure_is_recorded_and_retried(configured: Any) -> None:
    configured.NOTIFY_SLACK_WEBHOOKS = configured.NOTIFY_TEAMS_WEBHOOKS = []
    _mail_server_down(configured)
    _finding()
    assert notify.send_pending(now=_at(0)) == notify.NoticeResult(failed=1)
    assert Notice.objects.get().error == "mail server: ConnectionRefusedError: [Errno 111] Connection refused"

    _mail_server_up(configured)
    assert notify.send_pending(now=_at(1)) == notify.NoticeResult(sent=1)
    assert len(mail.outbox) == 1
    assert notify.send_pending(now=_at(60)) == notify.NoticeResult()


def test_a_notice_whose_webhook_was_removed_waits_for_it(configured: Any, hooks: WebhookServer) -> None:
    configured.NOTIFY_DIGEST_EMAILS = configured.NOTIFY_TEAMS_WEBHOOKS = []
    _finding()
    hooks.answers.append(500)
    notify.send_pending(now=_at(0))
    slack = list(configured.NOTIFY_SLACK_WEBHOOKS)
    configured.NOTIFY_SLACK_WEBHOOKS = []
    assert notify.send_pending(now=_at(5)) == notify.NoticeResult(skipped=1)
    configured.NOTIFY_SLACK_WEBHOOKS = slack
    assert notify.send_pending(now=_at(6)) == notify.NoticeResult(sent=1)
    assert len(hooks.posts) == 2


# --- secrets ------------------------------------------------------------------------------------


def test_webhook_urls_never_reach_the_ledger_the_logs_or_the_audit_trail(
    configured: Any, hooks: WebhookServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="portal")
    _finding()
    hooks.answers.extend([404, 500])  # both webhooks refuse once, echoing their paths
    notify.send_pending(now=_at(0))
    assert Notice.objects.exclude(error="").count() == 2
    notify.send_pending(now=_at(2))
    assert Notice.objects.filter(sent_at__isnull=False).count() == 3

    stored = json.dumps(list(Notice.objects.values()), default=str)
    stored += json.dumps(list(AuditEvent.objects.values()), default=str)
    for secret in (SLACK_SECRET, TEAMS_SECRET, SLACK_PATH, TEAMS_PATH, hooks.base):
        assert secret not in stored
        assert secret not in caplog.text
    assert "[webhook]" in caplog.text  # the echoed path was there, and was removed
    assert set(Notice.objects.exclude(channel="email").values_list("recipient", flat=True)) == {
        notify.webhook_name("slack", hooks.base + SLACK_PATH),
        notify.webhook_name("teams", hooks.base + TEAMS_PATH),
    }
    assert hooks.base not in repr(notify.digest_destinations())


# --- payloads ----------------------------------------------------------------------------------


def test_slack_gets_text_and_blocks_with_links_and_markup_escaped(
    configured: Any, hooks: WebhookServer
) -> None:
    finding = _finding(summary="<!channel> & <https://evil.example|click> robot")
    notify.send_pending(now=_at(0))
    payload = hooks.to(SLACK_PATH)[0]
    assert payload["text"] == "Customs: 1 new finding: 1 high"
    blocks = payload["blocks"]
    assert blocks[0] == {"type": "header", "text": {"type": "plain_text", "text": payload["text"]}}
    assert {block["type"] for block in blocks} <= {"header", "section", "context"}
    assert all(b["text"]["type"] == "mrkdwn" for b in blocks if b["type"] == "section")
    text = _slack_text(payload)
    assert "&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt; robot" in text
    assert "<!channel>" not in text
    assert "<https://evil" not in text
    assert f"<{SITE}/findings/{finding.pk}/|" in text
    assert f"<{SITE}/findings/|Open the findings list>" in text
    assert "*Audit trail tampered with* — 1" in text  # grouped under the kind's title, with its count


# From Microsoft's documentation: an incoming-webhook message is {"type": "message", "attachments": [...]}
# whose attachment has contentType application/vnd.microsoft.card.adaptive and the card as `content`;
# a card requires `type` "AdaptiveCard" and `version`; TextBlock requires `text`, FactSet `facts` of
# {title, value}, Action.OpenUrl `url`.
TEXT_BLOCK = {
    "type": "object",
    "required": ["type", "text"],
    "properties": {"type": {"const": "TextBlock"}, "text": {"type": "string", "minLength": 1}},
}
FACT_SET = {
    "type": "object",
    "required": ["type", "facts"],
    "properties": {
        "type": {"const": "FactSet"},
        "facts": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["title", "value"],
                "properties": {"title": {"type": "string"}, "value": {"type": "string"}},
            },
        },
    },
}
OPEN_URL = {
    "type": "object",
    "required": ["type", "url"],
    "properties": {"type": {"const": "Action.OpenUrl"}, "url": {"type": "string", "pattern": "^https?://"}},
}
TEAMS_MESSAGE = {
    "type": "object",
    "required": ["type", "attachments"],
    "properties": {
        "type": {"const": "message"},
        "attachments": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["contentType", "content"],
                "properties": {
                    "contentType": {"const": "application/vnd.microsoft.card.adaptive"},
                    "content": {
                        "type": "object",
                        "required": ["type", "version", "body"],
                        "properties": {
                            "type": {"const": "AdaptiveCard"},
                            "version": {"type": "string", "pattern": r"^1\.[0-5]$"},
                            "body": {"type": "array", "items": {"oneOf": [TEXT_BLOCK, FACT_SET]}},
                            "actions": {"type": "array", "items": OPEN_URL},
                        },
                    },
                },
            },
        },
    },
}


def test_teams_gets_an_adaptive_card(configured: Any, hooks: WebhookServer) -> None:
    finding = _finding(summary="robot_ci *can* push [here](https://evil.example)")
    _finding(severity=Severity.CRITICAL, summary="critical one")
    notify.send_pending(now=_at(0))
    payload = hooks.to(TEAMS_PATH)[0]
    jsonschema.validate(payload, TEAMS_MESSAGE)
    card = payload["attachments"][0]["content"]
    assert card["actions"] == [
        {"type": "Action.OpenUrl", "title": "Open the findings list", "url": f"{SITE}/findings/"}
    ]
    facts = next(element["facts"] for element in card["body"] if element["type"] == "FactSet")
    assert facts == [{"title": "Critical", "value": "1"}, {"title": "High", "value": "1"}]
    texts = [element["text"] for element in card["body"] if element["type"] == "TextBlock"]
    assert texts[0] == "Customs: 2 new findings: 1 critical, 1 high"
    line = next(text for text in texts if "robot" in text)
    assert line == (
        r"**High** · [robot\_ci \*can\* push \[here\](https://evil.example)]"
        f"({SITE}/findings/{finding.pk}/)"
    )


def test_e_mail_has_text_and_html_with_links_and_escaping(configured: Any) -> None:
    configured.NOTIFY_SLACK_WEBHOOKS = configured.NOTIFY_TEAMS_WEBHOOKS = []
    finding = _finding(summary="<script>alert(1)</script> robot")
    notify.send_pending(now=_at(0))
    message = mail.outbox[0]
    assert message.subject == "[Customs] 1 new finding: 1 high"
    assert message.extra_headers["Auto-Submitted"] == "auto-generated"
    assert f"{SITE}/findings/{finding.pk}/" in message.body
    assert "<script>alert(1)</script> robot" in message.body  # plain text is shown as it is
    html = _html(message)
    assert "&lt;script&gt;alert(1)&lt;/script&gt; robot" in html
    assert "<script>" not in html
    assert f'href="{SITE}/findings/{finding.pk}/"' in html


def test_a_long_digest_names_the_most_severe_and_counts_the_rest(
    configured: Any, hooks: WebhookServer
) -> None:
    for index in range(55):
        _finding(kind="access_without_rule", severity=Severity.MEDIUM, summary=f"medium {index:02}")
    for index in range(5):
        _finding(kind="audit_chain_broken", severity=Severity.CRITICAL, summary=f"critical {index}")
    notify.send_pending(now=_at(0))
    body = mail.outbox[0].body
    assert body.count(f"{SITE}/findings/") - 1 == notify.DIGEST_ITEMS  # the findings list link, once
    assert "critical 4" in body
    assert "...and 10 more not listed here." in body
    assert body.index("Audit trail tampered with: 5") < body.index("Registry access without a rule: 55")
    assert "60 new findings: 5 critical, 55 medium" in body
    assert len(Notice.objects.get(channel="email").findings.all()) == 60

    slack = hooks.to(SLACK_PATH)[0]
    assert len(slack["blocks"]) <= notify.SLACK_BLOCKS
    assert all(len(b["text"]["text"]) <= 3000 for b in slack["blocks"] if b["type"] == "section")
    assert "more not listed here" in slack["blocks"][-1]["elements"][0]["text"]
    assert len(json.dumps(hooks.to(TEAMS_PATH)[0]).encode()) <= notify.TEAMS_BYTES


def test_chat_messages_stay_within_the_services_limits_however_long_the_summaries(
    configured: Any, hooks: WebhookServer
) -> None:
    for index in range(notify.DIGEST_ITEMS):
        _finding(summary=f"{index:02} " + "x<&>" * 120)
    notify.send_pending(now=_at(0))
    slack, teams = hooks.to(SLACK_PATH)[0], hooks.to(TEAMS_PATH)[0]
    assert len(slack["blocks"]) <= notify.SLACK_BLOCKS
    assert len(json.dumps(slack["blocks"], ensure_ascii=False)) <= notify.SLACK_TEXT_BUDGET
    assert len(json.dumps(teams).encode()) <= notify.TEAMS_BYTES
    # What did not fit is counted, not silently dropped.
    more = slack["blocks"][-1]["elements"][0]["text"]
    listed = _slack_text(slack).count(f"{SITE}/findings/") - 2  # minus the two list links
    assert f"…and {notify.DIGEST_ITEMS - listed} more" in more
    jsonschema.validate(teams, TEAMS_MESSAGE)


def test_a_retried_digest_marks_findings_closed_since(configured: Any, hooks: WebhookServer) -> None:
    configured.NOTIFY_DIGEST_EMAILS = configured.NOTIFY_TEAMS_WEBHOOKS = []
    finding = _finding(summary="rotated meanwhile")
    hooks.answers.append(500)
    notify.send_pending(now=_at(0))
    Finding.objects.filter(pk=finding.pk).update(resolved_at=_at(1))
    assert notify.send_pending(now=_at(2)) == notify.NoticeResult(sent=1)
    assert "rotated meanwhile> _(resolved since)_" in _slack_text(hooks.to(SLACK_PATH)[-1])


# --- owners of expiring credentials -----------------------------------------------------------


def _expiring(owner: User | None, *, stage: int, expires_in_days: float = 13.5, **fields: Any) -> Finding:
    expires = T0 + timedelta(days=expires_in_days)
    fields.setdefault("severity", Severity.LOW)
    return _finding(
        kind=notify.EXPIRES_SOON,
        owner=owner,
        subject_label="robot$deploy",
        summary="robot$deploy on harbor-eu expires soon",
        detail={"stage": stage, "expires_at": expires.isoformat(), "days_left": int(expires_in_days)},
        **fields,
    )


@pytest.fixture
def owners_only(configured: Any) -> Any:
    configured.NOTIFY_DIGEST_EMAILS = configured.NOTIFY_SLACK_WEBHOOKS = configured.NOTIFY_TEAMS_WEBHOOKS = []
    return configured


def test_an_owner_is_told_once_at_each_stage(owners_only: Any) -> None:
    owner = factories.user(first_name="Ada", last_name="Lovelace")
    finding = _expiring(owner, stage=14)
    assert notify.send_pending(now=_at(0)) == notify.NoticeResult(sent=1)
    assert notify.send_pending(now=_at(60)) == notify.NoticeResult()
    for stage in (7, 1):
        Finding.objects.filter(pk=finding.pk).update(detail={**finding.detail, "stage": stage})
        assert notify.send_pending(now=_at(60 * 24 * (14 - stage))) == notify.NoticeResult(sent=1)
        assert notify.send_pending(now=_at(60 * 24 * (14 - stage) + 60)) == notify.NoticeResult()
    assert [message.to for message in mail.outbox] == [[owner.email]] * 3
    first = mail.outbox[0]
    assert first.subject == "[Customs] Your credential robot$deploy expires soon"
    assert "Hello Ada Lovelace," in first.body
    assert "in 14 days" in first.body  # 13.5 days: part days round up, as in the finding's summary
    assert "robot$deploy on harbor-eu expires soon" in first.body
    assert "in 1 day," in mail.outbox[2].body  # counted when sent: half a day left
    assert "<strong>robot$deploy</strong>" in _html(first)


def test_scans_and_sends_tell_an_owner_at_each_expiry_stage_once(owners_only: Any) -> None:
    """End to end: the hygiene scan opens and moves the finding through its stages, the notifier sends."""
    owner = factories.user(first_name="Ada", last_name="Lovelace")
    expires = T0 + timedelta(days=14)
    factories.registry_credential(
        factories.registry(kind="harbor"),
        name="robot$deploy",
        owner_user=owner,
        owner_kind="user",
        owner_id=owner.external_id,
        created_at=T0 - timedelta(days=30),
        expires_at=expires,
        last_used_at=T0,
        observed_at=T0,
    )
    sent: list[notify.NoticeResult] = []
    # 14, 7 and 1 days left, then the hourly scan again later on the last day.
    for offset in (timedelta(0), timedelta(days=7), timedelta(days=13), timedelta(days=13, hours=5)):
        hygiene.scan(now=T0 + offset)
        sent.append(notify.send_pending(now=T0 + offset + timedelta(minutes=1)))
    assert sent == [notify.NoticeResult(sent=1)] * 3 + [notify.NoticeResult()]
    assert [message.to for message in mail.outbox] == [[owner.email]] * 3
    assert "in 14 days" in mail.outbox[0].body
    assert "in 7 days" in mail.outbox[1].body
    assert "in 1 day," in mail.outbox[2].body
    keys = list(Notice.objects.values_list("key", flat=True))
    assert sorted(int(key.rsplit(":", 1)[1]) for key in keys) == [1, 7, 14]
    assert len({key.rsplit(":", 1)[0] for key in keys}) == 1  # one finding, one episode


def test_owner_notices_ignore_the_digest_minimum_severity(owners_only: Any) -> None:
    owners_only.NOTIFY_MIN_SEVERITY = "critical"
    _expiring(factories.user(), stage=7)
    assert notify.send_pending(now=_at(0)) == notify.NoticeResult(sent=1)


def test_owners_without_an_address_or_no_longer_here_are_not_told(owners_only: Any) -> None:
    no_address = factories.user()
    User.objects.filter(pk=no_address.pk).update(email="")
    _expiring(User.objects.get(pk=no_address.pk), stage=14)
    _expiring(factories.user(is_active=False), stage=14)
    _expiring(None, stage=14, owner_label="someone@old-idp")
    assert notify.send_pending(now=_at(0)) == notify.NoticeResult()
    assert mail.outbox == []


def test_owner_notices_can_be_switched_off(owners_only: Any) -> None:
    owners_only.NOTIFY_OWNERS_OF_EXPIRING = False
    _expiring(factories.user(), stage=14)
    assert notify.send_pending(now=_at(0)) == notify.NoticeResult()
    assert not Notice.objects.exists()


def test_an_owner_notice_not_yet_out_is_withdrawn_when_the_credential_is_renewed(owners_only: Any) -> None:
    finding = _expiring(factories.user(), stage=14)
    _mail_server_down(owners_only)
    assert notify.send_pending(now=_at(0)) == notify.NoticeResult(failed=1)
    _mail_server_up(owners_only)
    Finding.objects.filter(pk=finding.pk).update(resolved_at=_at(1))
    assert notify.send_pending(now=_at(2)) == notify.NoticeResult(skipped=1)
    assert mail.outbox == []
    assert not Notice.objects.exists()


def test_an_owner_notice_superseded_by_a_later_stage_is_not_sent_late(owners_only: Any) -> None:
    finding = _expiring(factories.user(), stage=14)
    _mail_server_down(owners_only)
    assert notify.send_pending(now=_at(0)) == notify.NoticeResult(failed=1)
    _mail_server_up(owners_only)
    Finding.objects.filter(pk=finding.pk).update(detail={**finding.detail, "stage": 7})
    assert notify.send_pending(now=_at(60 * 24 * 7)) == notify.NoticeResult(sent=1, skipped=1)
    assert len(mail.outbox) == 1
    assert Notice.objects.get().key.endswith(":7")


def test_an_expiring_credential_also_appears_in_the_digest_when_severe_enough(
    configured: Any, hooks: WebhookServer
) -> None:
    owner = factories.user()
    _expiring(owner, stage=7, severity=Severity.MEDIUM)
    notify.send_pending(now=_at(0))
    assert sorted(message.to[0] for message in mail.outbox) == sorted([owner.email, DIGEST_TO])
    assert len(hooks.posts) == 2


# --- status on the dashboard ----------------------------------------------------------------------


def test_recent_notices_show_state_and_error(configured: Any, hooks: WebhookServer) -> None:
    configured.NOTIFY_TEAMS_WEBHOOKS = []
    _finding()
    hooks.answers.append(502)
    notify.send_pending(now=_at(0))
    rows = {row.notice.channel: row for row in notify.recent_notices(10)}
    assert (rows["email"].state, rows["email"].findings) == ("sent", 1)
    assert rows["slack"].state == "retrying"
    assert rows["slack"].next_try == _at(1)
    html = render_to_string("portal/_notices.html", {"notices": notify.recent_notices(10)})
    assert "HTTP 502" in html
    assert DIGEST_TO in html
    assert rows["slack"].notice.recipient in html
    assert "Sent" in html
    assert "Failed" in html
    assert SLACK_SECRET not in html


def test_recent_notices_cost_one_query(configured: Any, django_assert_num_queries: Any) -> None:
    configured.NOTIFY_SLACK_WEBHOOKS = configured.NOTIFY_TEAMS_WEBHOOKS = []
    for minute in range(3):
        _finding(opened_at=_at(minute))
        notify.send_pending(now=_at(minute))
    with django_assert_num_queries(1):
        assert len(notify.recent_notices(10)) == 3
