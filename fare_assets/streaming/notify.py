"""Alerts about collection and structuring: email over SMTP and/or a JSON webhook, each off unless configured.

FARES_ALERT_SMTP_HOST, _PORT (25), _FROM, _TO (comma-separated), optional _USER/_PASSWORD;
FARES_ALERT_WEBHOOK_URL. Credentials are only sent over STARTTLS, and neither they nor the webhook
URL (which often carries a token) ever appear in an error message.
"""
import os
import smtplib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage

import requests

from fare_assets.settings import ENCRYPTED_URL_RULE, unencrypted_remote

SMTP_TIMEOUT_SECONDS = 10
WEBHOOK_TIMEOUT = (3.0, 10.0)
SUBJECT_PREFIX = "[fares]"


class AlertConfigError(ValueError):
    """The FARES_ALERT_* settings cannot be used as they are (a channel half-configured, or insecure)."""


class WebhookError(RuntimeError):
    """The webhook did not take the alert."""


@dataclass(frozen=True)
class Alert:
    """One alert: a subject line, a plain-text body and the facts behind them."""

    kind: str
    subject: str
    text: str
    facts: dict = field(default_factory=dict)


@dataclass(frozen=True)
class AlertSettings:
    """Where alerts go; a channel without its settings is off."""

    smtp_host: str = ""
    smtp_port: int = 25
    smtp_from: str = ""
    smtp_to: tuple[str, ...] = ()
    smtp_user: str = ""
    smtp_password: str = field(default="", repr=False)
    webhook_url: str = field(default="", repr=False)

    @property
    def channels(self) -> list[str]:
        return [name for name, on in (("email", bool(self.smtp_host)), ("webhook", bool(self.webhook_url))) if on]


# What a sensor says when it has nowhere to send an alert.
NO_CHANNEL = "no alert channel configured (FARES_ALERT_SMTP_HOST, FARES_ALERT_WEBHOOK_URL)"


def alert_settings_from_env() -> AlertSettings:
    """The FARES_ALERT_* variables; a half-configured channel is an error rather than silence."""
    def env(name: str) -> str:
        return os.environ.get(f"FARES_ALERT_{name}", "").strip()

    port = env("SMTP_PORT") or "25"
    if not port.isdigit():
        raise AlertConfigError(f"FARES_ALERT_SMTP_PORT={port!r} is not a port number")
    settings = AlertSettings(
        smtp_host=env("SMTP_HOST"), smtp_port=int(port), smtp_from=env("SMTP_FROM"),
        smtp_to=tuple(address.strip() for address in env("SMTP_TO").split(",") if address.strip()),
        smtp_user=env("SMTP_USER"), smtp_password=os.environ.get("FARES_ALERT_SMTP_PASSWORD", ""),
        webhook_url=env("WEBHOOK_URL"),
    )
    if settings.smtp_host:
        missing = [name for name, value in (("FARES_ALERT_SMTP_FROM", settings.smtp_from),
                                            ("FARES_ALERT_SMTP_TO", settings.smtp_to)) if not value]
        if missing:
            raise AlertConfigError(f"FARES_ALERT_SMTP_HOST is set but {', '.join(missing)} is not")
    if bool(settings.smtp_user) != bool(settings.smtp_password):
        raise AlertConfigError("FARES_ALERT_SMTP_USER and FARES_ALERT_SMTP_PASSWORD go together")
    if settings.webhook_url and unencrypted_remote(settings.webhook_url):
        # Its URL is not quoted: it often carries the webhook's token.
        raise AlertConfigError(f"FARES_ALERT_WEBHOOK_URL must be {ENCRYPTED_URL_RULE}: it often carries a token")
    return settings


def run_failure_alert(job_name: str, run_id: str, message: str, step_errors: list[str],
                      partitions: str | None = None) -> Alert:
    """A run failed: what failed, and that nothing re-runs it by itself."""
    covering = f" for {partitions}" if partitions else ""
    lines = [f"The Dagster run {run_id} of {job_name}{covering} failed.", "", message]
    lines += ["", "Step errors:", *(f"- {error}" for error in step_errors)] if step_errors else []
    lines += ["", "Nothing re-runs it by itself: once the cause is fixed, re-execute it from the Dagster UI "
                  "(Re-execute, from failure)."]
    return Alert("run_failed", f"{SUBJECT_PREFIX} {job_name} run {run_id[:8]} failed", "\n".join(lines),
                 {"job": job_name, "run_id": run_id, "partitions": partitions, "message": message,
                  "step_errors": step_errors})


def unproductive_sweeps_alert(job_name: str, run_id: str, sweeps: list[dict]) -> Alert:
    """Sweeps that got no usable answer: no trip to ask about, or every call failed.

    Each sweep is {"at": ISO time, "calls": n, "failures_by_kind": {kind: n}}.
    """
    lines = [f"The Dagster run {run_id} of {job_name} had {len(sweeps)} sweep(s) without one successful call:", ""]
    for sweep in sweeps:
        failures = ", ".join(f"{kind} {count}" for kind, count in sorted(sweep["failures_by_kind"].items()))
        outcome = f" ({failures})" if failures else ", empty watchlist"
        lines.append(f"- {sweep['at']}: {sweep['calls']} calls{outcome}")
    return Alert("sweeps_without_success", f"{SUBJECT_PREFIX} {job_name} run {run_id[:8]}: "
                 f"{len(sweeps)} sweep(s) without a successful call", "\n".join(lines),
                 {"job": job_name, "run_id": run_id, "sweeps": sweeps})


def providers_without_success_alert(job_name: str, run_id: str, providers: dict[str, dict]) -> Alert:
    """Providers every call of a run failed for, while others answered (providers_without_success's dict)."""
    lines = [f"The Dagster run {run_id} of {job_name} got no usable answer from {len(providers)} provider(s), "
             "while the others answered: the trips they watch are not being collected.", ""]
    for provider, outcome in providers.items():
        failures = ", ".join(f"{kind} {count}" for kind, count in outcome["failures_by_kind"].items())
        lines.append(f"- {provider}: {outcome['calls']} calls ({failures})")
    lines += ["", "auth_error means refused credentials, which will not mend by themselves; the raw records of the "
                  "calls hold each error."]
    return Alert("providers_without_success", f"{SUBJECT_PREFIX} {job_name} run {run_id[:8]}: no answer from "
                 f"{', '.join(providers)}", "\n".join(lines), {"job": job_name, "run_id": run_id, "providers": providers})


def undelivered_records_alert(job_name: str, run_id: str, waiting: int, spool: str) -> Alert:
    """Records the delivery stream could not deliver within its retry bound: they wait in the spool."""
    text = (f"The Dagster run {run_id} of {job_name} left {waiting} record(s) undelivered in the spool {spool}.\n"
            "The next collection re-sends them; the run's log says why the delivery failed (a wrong stream name or "
            "missing permissions will not mend by itself).")
    return Alert("records_undelivered", f"{SUBJECT_PREFIX} {job_name} run {run_id[:8]}: {waiting} record(s) "
                 "undelivered", text, {"job": job_name, "run_id": run_id, "records": waiting, "spool": spool})


def firehose_bypassed_alert(job_name: str, run_id: str, records: int, stream: str) -> Alert:
    """Records Firehose did not take within the retry bound, written straight to the lake's landing prefix instead."""
    text = (f"The Dagster run {run_id} of {job_name} wrote {records} record(s) straight to the landing prefix: the "
            f"delivery stream {stream} did not take them within the retry bound.\nNothing is lost and the sensor "
            "structures them like any object, but the run's log says why Firehose refused them (a wrong stream name "
            "or missing permissions will not mend by itself, and every collection would bypass Firehose).")
    return Alert("firehose_bypassed", f"{SUBJECT_PREFIX} {job_name} run {run_id[:8]}: {records} record(s) "
                 f"bypassed Firehose", text, {"job": job_name, "run_id": run_id, "records": records, "stream": stream})


def quarantined_records_alert(job_name: str, run_id: str, quarantined: int, hours: list[str], folder: str) -> Alert:
    """Raw records a structuring run could not structure: each is kept in the quarantine with its reason."""
    span = hours[0] if len(hours) == 1 else f"{hours[0]}..{hours[-1]}"
    text = (f"The Dagster run {run_id} of {job_name} quarantined {quarantined} record(s) of landing hour(s) {span}, "
            f"each with its reason, under {folder}.\nNothing is lost, but their fares are not on the page. Many at once "
            "usually mean a provider changed its format: every answer of it is then quarantined until the job reads "
            "the new one, and a rerun of the hours structures them.")
    return Alert("records_quarantined", f"{SUBJECT_PREFIX} {job_name} run {run_id[:8]}: {quarantined} record(s) "
                 f"quarantined in {span}", text,
                 {"job": job_name, "run_id": run_id, "records": quarantined, "landing_hours": hours, "folder": folder})


def email_message(alert: Alert, sender: str, recipients: tuple[str, ...]) -> EmailMessage:
    """The alert as a plain-text email."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = alert.subject
    message.set_content(alert.text)
    return message


def webhook_payload(alert: Alert) -> dict:
    """The alert as JSON; `text` makes it readable by chat webhooks (Slack, Mattermost) as is."""
    return {"text": f"{alert.subject}\n{alert.text}", "kind": alert.kind, "subject": alert.subject, **alert.facts}


def send_email(alert: Alert, settings: AlertSettings) -> None:
    """Send over SMTP, upgrading to STARTTLS when offered; credentials never go out unencrypted."""
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=SMTP_TIMEOUT_SECONDS) as smtp:
        smtp.ehlo()
        encrypted = smtp.has_extn("starttls")
        if encrypted:
            smtp.starttls(context=ssl.create_default_context())
            smtp.ehlo()
        if settings.smtp_user:
            if not encrypted:
                raise AlertConfigError(f"SMTP server {settings.smtp_host}:{settings.smtp_port} offers no STARTTLS; "
                                       "refusing to send FARES_ALERT_SMTP_USER's password unencrypted")
            smtp.login(settings.smtp_user, settings.smtp_password)
        smtp.send_message(email_message(alert, settings.smtp_from, settings.smtp_to))


def post_webhook(alert: Alert, url: str) -> None:
    """POST the alert's JSON; any answer but 2xx is a failure."""
    # A redirect would turn the POST into a GET and drop the alert, so it counts as a failure too.
    answer = requests.post(url, json=webhook_payload(alert), timeout=WEBHOOK_TIMEOUT, allow_redirects=False)
    if not 200 <= answer.status_code < 300:
        raise WebhookError(f"the webhook answered HTTP {answer.status_code}")


def _problem(error: Exception) -> str:
    # Library messages can quote the webhook URL or the SMTP server's reply to a login; only our own
    # messages and the exception's type are safe to show.
    if isinstance(error, (AlertConfigError, WebhookError)):
        return str(error)
    if isinstance(error, smtplib.SMTPResponseException):
        return f"{type(error).__name__} (SMTP code {error.smtp_code})"
    return type(error).__name__


def send_alert(alert: Alert, settings: AlertSettings, channels: list[str] | None = None) -> dict[str, str | None]:
    """Send to every configured channel (or those of `channels`): channel -> None when delivered, else a problem
    safe to log."""
    senders = {"email": lambda: send_email(alert, settings),
               "webhook": lambda: post_webhook(alert, settings.webhook_url)}
    outcome = {}
    for channel in settings.channels if channels is None else channels:
        # Any exception is caught: one broken channel must not keep the alert from the other.
        try:
            senders[channel]()
            outcome[channel] = None
        except Exception as error:
            outcome[channel] = _problem(error)
    return outcome


def send_from_run(log, alert: Alert) -> None:
    """Send an alert from a run, to `log` (a Dagster run's logger) what happened: alerting trouble never fails the run."""
    try:
        settings = alert_settings_from_env()
    except AlertConfigError as error:
        log.warning(f"alert not sent: {error}")
        return
    for channel, problem in send_alert(alert, settings).items():
        if problem:
            log.warning(f"alert not sent by {channel}: {problem}")
        else:
            log.info(f"alert sent by {channel}: {alert.subject}")


def send_waiting(waiting: dict[str, dict], settings: AlertSettings, alert_for: Callable[[str], Alert | None],
                 deadline: float, clock: Callable[[], float] = time.monotonic) -> dict[str, str]:
    """Send waiting alerts to every configured channel that has not taken them, oldest first, and drop those that
    every configured channel has taken. `waiting` maps a key to {"sent": channels that took it, "since": epoch
    seconds it was queued}; it is updated in place.

    No alert is started after `deadline` (on `clock`), and a channel that fails is not tried again in the same call:
    a mail server that is down would otherwise cost its timeout once per waiting alert. A key whose alert cannot be
    built any more (`alert_for` gives None) is dropped; one that fails to build stops the call, what was sent kept.
    Returns what failed: channel -> problem.
    """
    down: dict[str, str] = {}
    for key in list(waiting):
        due = [channel for channel in settings.channels if channel not in waiting[key]["sent"]]
        if not due:
            del waiting[key]
            continue
        trying = [channel for channel in due if channel not in down]
        if not trying:
            continue
        if clock() > deadline:
            break
        try:
            alert = alert_for(key)
        except Exception as error:
            down["building alerts"] = _problem(error)
            break
        if alert is None:
            del waiting[key]
            continue
        outcome = send_alert(alert, settings, trying)
        down.update({channel: problem for channel, problem in outcome.items() if problem})
        waiting[key]["sent"] += [channel for channel, problem in outcome.items() if problem is None]
        if all(channel in waiting[key]["sent"] for channel in settings.channels):
            del waiting[key]
    return down
