"""The collector under faults: a misbehaving provider, the rate limit, alerts, the backfill job."""
import datetime as dt
import email
import json
import socketserver
import threading
import time
from collections import Counter
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from dagster import DagsterInstance, Definitions, build_sensor_context

from fare_assets.definitions import build_defs
from fare_assets.resources import FareSourceResource, LakeResource, WarehouseResource, local_resources
from fare_assets import run_alerts
from fare_assets.run_alerts import cursor_state, failed_run_alert, run_partitions
from fare_assets.storing.lake import RAW_PREFIX
from fare_assets.streaming.assets import backfill_job, collect_job, raw_fare_quotes
from fare_assets.streaming.collector import sweep
from fare_assets.streaming.delivery import LocalDeliveryStream
from fare_assets.streaming.sweep_times import collection_times, replay_times, sweep_times
from fare_assets.streaming.notify import (NO_CHANNEL, AlertConfigError, AlertSettings, alert_settings_from_env,
                                          email_message, run_failure_alert, send_alert, send_waiting,
                                          unproductive_sweeps_alert, webhook_payload)
from fare_assets.streaming.providers import CallResult, ProviderConfigError, retry_after_seconds
from fare_assets.streaming.qpx_client import CLOCK_HEADER, QpxClient, qpx_rate_limit
from fare_assets.streaming.rate_limit import TokenBucket
from fare_assets.streaming.watchlist import TripQuery

UTC = dt.timezone.utc
QPX_ANSWER = {"kind": "qpxExpress#tripsSearch", "trips": {"kind": "qpxexpress#tripOptions", "tripOption": []}}
TRUNCATED = '{"kind": "qpxExpress#tripsSearch", "trips": {"kind": "qpxexpress#tripOp'
HTML_PAGE = "<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>"
WRONG_SHAPE = '{"results": [], "note": "not QPX"}'
SLOW_SECONDS = 0.6
READ_TIMEOUT = 0.15


class FakeClock:
    """A monotonic clock that only moves when someone sleeps on it; records every sleep."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds


# --- a misbehaving QPX provider ------------------------------------------------------------------

def _send(handler, status: int, body: str, content_type: str = "application/json", headers: dict | None = None,
          echo_clock: bool = True):
    payload = body.encode()
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(payload)))
    # As the simulator does, a replayed moment is said back, unless the endpoint ignores the clock.
    if handler.headers.get(CLOCK_HEADER) and echo_clock:
        handler.send_header(CLOCK_HEADER, handler.headers[CLOCK_HEADER])
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(payload)


def _slow(handler, attempt):
    time.sleep(SLOW_SECONDS)
    _send(handler, 200, json.dumps(QPX_ANSWER))


def _qpx_error(status: int, message: str) -> str:
    return json.dumps({"error": {"code": status, "message": message}})


def _answer(handler, attempt):
    _send(handler, 200, json.dumps(QPX_ANSWER))


# Each behaviour answers one request; `attempt` counts that trip's requests from 1.
BEHAVIOURS = {
    "ok": _answer,
    "truncated_json": lambda handler, attempt: _send(handler, 200, TRUNCATED),
    "html_200": lambda handler, attempt: _send(handler, 200, HTML_PAGE, "text/html"),
    "wrong_shape": lambda handler, attempt: _send(handler, 200, WRONG_SHAPE),
    "html_502": lambda handler, attempt: _send(handler, 502, HTML_PAGE, "text/html"),
    "unavailable_503": lambda handler, attempt: _send(handler, 503, _qpx_error(503, "backend unavailable")),
    "rate_limited_429": lambda handler, attempt: _send(handler, 429, _qpx_error(429, "slow down"),
                                                       headers={"Retry-After": "1"}),
    "bad_request_400": lambda handler, attempt: _send(handler, 400, _qpx_error(400, "bad date")),
    "slow": _slow,
    "hang_up": lambda handler, attempt: None,
    "error_500_then_ok": lambda handler, attempt: (_send(handler, 500, _qpx_error(500, "oops")) if attempt == 1
                                                   else _answer(handler, attempt)),
    "retry_after_twice_then_ok": lambda handler, attempt: (
        _send(handler, 429, "{}", headers={"Retry-After": "2"}) if attempt <= 2 else _answer(handler, attempt)),
    "ignores_the_clock": lambda handler, attempt: _send(handler, 200, json.dumps(QPX_ANSWER), echo_clock=False),
    "quota_spent": lambda handler, attempt: _send(handler, 429, _qpx_error(429, "daily quota spent"),
                                                  headers={"Retry-After": "3600"}),
}


class ProviderHandler(BaseHTTPRequestHandler):
    """Answers as the searched trip's destination names (per trip, so concurrent calls stay deterministic)."""

    server: "MisbehavingProvider"

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        destination = body["request"]["slice"][0]["destination"]
        with self.server.lock:
            self.server.requests[destination] += 1
            attempt = self.server.requests[destination]
        try:
            BEHAVIOURS.get(destination, BEHAVIOURS[self.server.default])(self, attempt)
        except OSError:
            pass  # the client gave up on a slow answer first

    def log_message(self, format: str, *args) -> None:
        pass


class MisbehavingProvider(ThreadingHTTPServer):
    def __init__(self, default: str) -> None:
        super().__init__(("127.0.0.1", 0), ProviderHandler)
        self.default = default
        self.lock = threading.Lock()
        self.requests: Counter = Counter()


@contextmanager
def provider(default: str = "ok"):
    server = MisbehavingProvider(default)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def trip(destination: str) -> TripQuery:
    return TripQuery("qpx", "SFO", destination, dt.date(2026, 10, 10), dt.date(2026, 10, 13), 1, 0, "COACH")


def read_records(lake: Path, stream: LocalDeliveryStream) -> list[dict]:
    return [json.loads(line) for key in stream.objects_written for line in (lake / key).read_text().splitlines()]


def fast_client(url: str, clock: FakeClock, **overrides) -> QpxClient:
    """Real HTTP with small timeouts; backoff sleeps go to the fake clock, so retries cost no time."""
    options = {"timeout": (1.0, READ_TIMEOUT), "retries": 2, "backoff_seconds": 0.01, "max_backoff_seconds": 8.0,
               "sleep": clock.sleep, **overrides}
    return QpxClient(url, **options)


# --- the token bucket ----------------------------------------------------------------------------

def test_the_bucket_gives_a_burst_then_one_token_per_interval():
    clock = FakeClock()
    bucket = TokenBucket(rate_per_second=10, burst=3, clock=clock.time, sleep=clock.sleep)
    for _ in range(6):
        bucket.acquire()
    assert clock.sleeps == pytest.approx([0.1, 0.1, 0.1])


def test_an_idle_bucket_refills_only_up_to_its_burst():
    clock = FakeClock()
    bucket = TokenBucket(rate_per_second=4, burst=2, clock=clock.time, sleep=clock.sleep)
    bucket.acquire()
    clock.now += 100
    for _ in range(3):
        bucket.acquire()
    assert clock.sleeps == pytest.approx([0.25])


def test_a_hold_makes_every_caller_wait_it_out():
    clock = FakeClock()
    bucket = TokenBucket(rate_per_second=10, burst=5, clock=clock.time, sleep=clock.sleep)
    bucket.hold(3)
    bucket.acquire()
    bucket.acquire()
    assert clock.sleeps == pytest.approx([3.0, 0.1])


def test_concurrent_callers_each_reserve_their_own_slot():
    waits: list[float] = []
    lock = threading.Lock()

    def record(seconds: float) -> None:
        with lock:
            waits.append(seconds)

    # A frozen clock: every caller arrives at once, so the waits must be 1..n-burst intervals, each once.
    bucket = TokenBucket(rate_per_second=50, burst=4, clock=lambda: 0.0, sleep=record)
    threads = [threading.Thread(target=bucket.acquire) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(waits) == pytest.approx([slot / 50 for slot in range(1, 37)])


def test_the_rate_limit_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("FARES_QPX_RATE_PER_SECOND", raising=False)
    monkeypatch.delenv("FARES_QPX_RATE_BURST", raising=False)
    default = qpx_rate_limit()
    assert (default.rate_per_second, default.burst) == (20.0, 10)
    monkeypatch.setenv("FARES_QPX_RATE_PER_SECOND", "2.5")
    monkeypatch.setenv("FARES_QPX_RATE_BURST", "3")
    configured = qpx_rate_limit()
    assert (configured.rate_per_second, configured.burst) == (2.5, 3)
    # The local simulator's rate is the resource's, and so is its burst: the aws settings do not apply to it.
    explicit = qpx_rate_limit(rate_per_second=1000)
    assert (explicit.rate_per_second, explicit.burst) == (1000, 10)
    monkeypatch.setenv("FARES_QPX_RATE_PER_SECOND", "fast")
    with pytest.raises(ProviderConfigError, match="FARES_QPX_RATE_PER_SECOND='fast'"):
        qpx_rate_limit()
    with pytest.raises(ValueError, match="positive"):
        TokenBucket(0, 1)


# --- the client ----------------------------------------------------------------------------------

def test_retry_after_reads_seconds_and_http_dates():
    now = dt.datetime(2026, 10, 21, 7, 28, 0, tzinfo=UTC)
    assert retry_after_seconds("120", now) == 120
    assert retry_after_seconds("Wed, 21 Oct 2026 07:28:10 GMT", now) == 10
    assert retry_after_seconds("Wed, 21 Oct 2026 07:00:00 GMT", now) == 0
    assert retry_after_seconds("soon", now) is None and retry_after_seconds(None, now) is None


class SpyLimiter:
    def __init__(self) -> None:
        self.acquired = 0
        self.holds: list[float] = []

    def acquire(self) -> None:
        self.acquired += 1

    def hold(self, seconds: float) -> None:
        self.holds.append(seconds)


def test_every_attempt_takes_a_token_and_retry_after_holds_the_provider():
    clock, limiter = FakeClock(), SpyLimiter()
    with provider() as (server, url):
        client = fast_client(url, clock, rate_limiter=limiter)
        flaky, storm = client.search(trip("error_500_then_ok")), client.search(trip("rate_limited_429"))
    assert (flaky.status, storm.status) == (200, 429)
    assert server.requests == {"error_500_then_ok": 2, "rate_limited_429": 3}
    assert limiter.acquired == 5
    assert limiter.holds == [1.0, 1.0]


def test_a_wait_longer_than_a_sweep_retries_for_records_the_next_calls_without_making_them():
    # A spent quota: retrying every trip of the sweep four times would only be refused again.
    clock = FakeClock()
    with provider() as (server, url):
        client = fast_client(url, clock)
        refused, skipped = client.search(trip("quota_spent")), client.search(trip("ok"))
    assert (refused.status, refused.failure) == (429, "rate_limited") and clock.sleeps == []
    assert (skipped.status, skipped.failure) == (0, "rate_limited")
    assert skipped.error == "not called: qpx asked to wait 3600 s (HTTP 429)"
    assert server.requests == {"quota_spent": 1}


def test_a_replay_the_endpoint_does_not_confirm_is_refused_not_recorded_as_history():
    # A live QPX-compatible endpoint ignores the clock header and answers for now.
    at = dt.datetime(2026, 10, 1, 12, tzinfo=UTC)
    with provider() as (server, url):
        client = fast_client(url, FakeClock())
        live, replayed = client.search(trip("ignores_the_clock"), at), client.search(trip("ok"), at)
    assert (live.status, live.failure, live.response) == (0, "unsupported_replay", None)
    assert live.error == "qpx did not confirm answering for 2026-10-01T12:00:00Z (X-Market-Time None in its answer)"
    assert (replayed.status, replayed.response) == (200, QPX_ANSWER)


def test_retry_after_is_honoured_through_the_shared_bucket():
    clock = FakeClock()
    bucket = TokenBucket(rate_per_second=5, burst=1, clock=clock.time, sleep=clock.sleep)
    with provider() as (server, url):
        result = fast_client(url, clock, retries=3, rate_limiter=bucket).search(trip("retry_after_twice_then_ok"))
    assert result.status == 200 and result.response == QPX_ANSWER
    assert server.requests["retry_after_twice_then_ok"] == 3
    # The client waits out each Retry-After; by then the bucket's hold has passed, so it adds nothing.
    assert clock.sleeps == pytest.approx([2.0, 2.0])


# --- sweeps against the misbehaving provider -----------------------------------------------------

def test_a_sweep_through_every_fault_records_each_call_once(tmp_path):
    faults = ["truncated_json", "html_200", "wrong_shape", "html_502", "unavailable_503", "rate_limited_429",
              "bad_request_400", "slow", "hang_up"]
    successes = ["ok", "error_500_then_ok"]
    at = dt.datetime(2026, 10, 1, 12, tzinfo=UTC)
    stream = LocalDeliveryStream(tmp_path)
    with provider() as (server, url):
        stats = sweep([trip(name) for name in faults + successes], fast_client(url, FakeClock()), stream, at,
                      concurrency=4)
    stream.flush()
    records = {record["query"]["destination"]: record for record in read_records(tmp_path, stream)}

    assert stats.calls == len(faults + successes) == stream.records_delivered == len(records)
    assert stats.succeeded == len(successes)
    assert stats.failures == Counter({"bad_response": 3, "server_error": 2, "rate_limited": 1, "client_error": 1,
                                      "timeout": 1, "network": 1})
    # Retryable answers are retried (2 retries), the rest are not; nor is a posted search the provider received and
    # did not answer (too slow, or hung up), which it may still run and bill.
    assert {name: server.requests[name] for name in faults + successes} == {
        "truncated_json": 1, "html_200": 1, "wrong_shape": 1, "html_502": 3, "unavailable_503": 3,
        "rate_limited_429": 3, "bad_request_400": 1, "slow": 1, "hang_up": 1, "ok": 1, "error_500_then_ok": 2}
    for name in successes:
        assert records[name]["status"] == 200 and records[name]["response"] == QPX_ANSWER
        assert "error" not in records[name] and "body" not in records[name]
    for name in faults:
        assert "response" not in records[name] and records[name]["error"], name
    # Unusable answers are kept whole, as received.
    status_and_body = {name: (records[name]["status"], records[name].get("body")) for name in faults}
    assert status_and_body == {
        "truncated_json": (200, TRUNCATED), "html_200": (200, HTML_PAGE), "wrong_shape": (200, WRONG_SHAPE),
        "html_502": (502, HTML_PAGE), "unavailable_503": (503, _qpx_error(503, "backend unavailable")),
        "rate_limited_429": (429, _qpx_error(429, "slow down")), "bad_request_400": (400, _qpx_error(400, "bad date")),
        "slow": (0, None), "hang_up": (0, None)}
    assert "not valid JSON" in records["truncated_json"]["error"] and "not valid JSON" in records["html_200"]["error"]
    assert "not a QPX trips.search answer" in records["wrong_shape"]["error"]
    assert records["unavailable_503"]["error"] == "HTTP 503: backend unavailable"
    assert records["rate_limited_429"]["error"] == "HTTP 429: slow down"
    assert records["bad_request_400"]["error"] == "HTTP 400: bad date"
    assert records["slow"]["error"].startswith("ReadTimeout")
    assert records["hang_up"]["error"].startswith("ConnectionError")
    assert {record["collected_at"] for record in records.values()} == {"2026-10-01T12:00:00Z"}


class BrokenClient:
    provider = "qpx"

    def search(self, trip, at):
        if trip.destination == "client_bug":
            raise KeyError("tripOption")
        return CallResult(200, 1, response=QPX_ANSWER)


def test_a_client_exception_becomes_a_record_not_a_lost_sweep(tmp_path):
    stream = LocalDeliveryStream(tmp_path)
    stats = sweep([trip("client_bug"), trip("ok")], BrokenClient(), stream, dt.datetime(2026, 10, 1, tzinfo=UTC))
    stream.flush()
    records = {record["query"]["destination"]: record for record in read_records(tmp_path, stream)}
    assert stats.calls == stream.records_delivered == 2 and stats.failures == Counter({"collector_error": 1})
    assert records["client_bug"]["status"] == 0 and records["client_bug"]["error"] == "KeyError: 'tripOption'"
    assert records["ok"]["response"] == QPX_ANSWER


# --- alerts --------------------------------------------------------------------------------------

class SmtpHandler(socketserver.StreamRequestHandler):
    """Enough SMTP for smtplib: EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT (no STARTTLS, no AUTH)."""

    server: "SmtpSink"

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        self.reply("220 sink ESMTP")
        recipients: list[str] = []
        while line := self.rfile.readline():
            verb = line.decode().strip().split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                self.reply("250 sink")
            elif verb == "RCPT":
                recipients.append(line.decode().split(":", 1)[1].strip().strip("<>"))
                self.reply("250 ok")
            elif verb == "DATA":
                self.reply("354 end with <CRLF>.<CRLF>")
                lines = []
                while (data := self.rfile.readline()) != b".\r\n":
                    lines.append(data[1:] if data.startswith(b"..") else data)
                self.server.messages.append((recipients, email.message_from_bytes(b"".join(lines))))
                self.reply("250 queued")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            elif verb in ("MAIL", "RSET", "NOOP"):
                self.reply("250 ok")
            else:
                self.reply("502 not implemented")


class SmtpSink(socketserver.ThreadingTCPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), SmtpHandler)
        self.messages: list = []


class WebhookHandler(BaseHTTPRequestHandler):
    server: "WebhookReceiver"

    def do_POST(self) -> None:
        self.server.payloads.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(self.server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args) -> None:
        pass


class WebhookReceiver(ThreadingHTTPServer):
    def __init__(self, status: int) -> None:
        super().__init__(("127.0.0.1", 0), WebhookHandler)
        self.status = status
        self.payloads: list[dict] = []


@contextmanager
def serving(server):
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def webhook(status: int = 204):
    return serving(WebhookReceiver(status))


def url_of(server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/hooks/secret-token"


ALERT = run_failure_alert("collect_fares", "0123456789abcdef", 'Execution of run for "collect_fares" failed.',
                          ["raw_fare_quotes: ValueError: every_hours must be positive, not 0"])
ALERT_ENV = ["SMTP_HOST", "SMTP_PORT", "SMTP_FROM", "SMTP_TO", "SMTP_USER", "SMTP_PASSWORD", "WEBHOOK_URL"]


@pytest.fixture
def alert_env(monkeypatch):
    for name in ALERT_ENV:
        monkeypatch.delenv(f"FARES_ALERT_{name}", raising=False)
    return monkeypatch


def test_alerts_are_off_unless_configured_and_half_a_channel_is_an_error(alert_env):
    assert alert_settings_from_env().channels == []
    alert_env.setenv("FARES_ALERT_SMTP_HOST", "mail.example.org")
    alert_env.setenv("FARES_ALERT_SMTP_FROM", "fares@example.org")
    with pytest.raises(AlertConfigError, match="FARES_ALERT_SMTP_TO"):
        alert_settings_from_env()
    alert_env.setenv("FARES_ALERT_SMTP_TO", "ops@example.org, oncall@example.org")
    alert_env.setenv("FARES_ALERT_WEBHOOK_URL", "https://hooks.example.org/secret-token")
    settings = alert_settings_from_env()
    assert settings.channels == ["email", "webhook"]
    assert settings.smtp_to == ("ops@example.org", "oncall@example.org") and settings.smtp_port == 25
    alert_env.setenv("FARES_ALERT_SMTP_USER", "fares")
    with pytest.raises(AlertConfigError, match="go together"):
        alert_settings_from_env()
    alert_env.setenv("FARES_ALERT_SMTP_PASSWORD", "hunter2")
    assert "hunter2" not in repr(alert_settings_from_env()) and "secret-token" not in repr(alert_settings_from_env())
    # Its token would travel unencrypted: refused, without quoting it.
    alert_env.setenv("FARES_ALERT_WEBHOOK_URL", "http://hooks.example.org/secret-token")
    with pytest.raises(AlertConfigError, match="must be an https URL") as refused:
        alert_settings_from_env()
    assert "secret-token" not in str(refused.value)


def test_alert_messages_say_what_failed():
    message = email_message(ALERT, "fares@example.org", ("ops@example.org", "oncall@example.org"))
    assert message["Subject"] == "[fares] collect_fares run 01234567 failed"
    assert message["To"] == "ops@example.org, oncall@example.org"
    assert "every_hours must be positive" in message.get_content()
    payload = webhook_payload(ALERT)
    assert payload["kind"] == "run_failed" and payload["run_id"] == "0123456789abcdef"
    assert payload["text"].startswith("[fares] collect_fares run 01234567 failed\n")
    sweeps = unproductive_sweeps_alert("backfill_fares", "fedcba9876543210", [
        {"at": "2026-10-01T00:00:00Z", "calls": 4, "failures_by_kind": {"timeout": 3, "server_error": 1}},
        {"at": "2026-10-01T12:00:00Z", "calls": 0, "failures_by_kind": {}}])
    assert sweeps.text.splitlines()[2:] == ["- 2026-10-01T00:00:00Z: 4 calls (server_error 1, timeout 3)",
                                            "- 2026-10-01T12:00:00Z: 0 calls, empty watchlist"]


def test_an_alert_is_mailed_through_a_real_smtp_server():
    with serving(SmtpSink()) as sink:
        settings = AlertSettings(smtp_host="127.0.0.1", smtp_port=sink.server_address[1], smtp_from="fares@example.org",
                                 smtp_to=("ops@example.org", "oncall@example.org"))
        assert send_alert(ALERT, settings) == {"email": None}
    [(recipients, message)] = sink.messages
    assert recipients == ["ops@example.org", "oncall@example.org"]
    assert message["Subject"] == ALERT.subject and message["From"] == "fares@example.org"
    assert "raw_fare_quotes: ValueError" in message.get_payload(decode=True).decode()


def test_credentials_never_travel_unencrypted():
    with serving(SmtpSink()) as sink:
        settings = AlertSettings(smtp_host="127.0.0.1", smtp_port=sink.server_address[1], smtp_from="fares@example.org",
                                 smtp_to=("ops@example.org",), smtp_user="fares", smtp_password="hunter2")
        outcome = send_alert(ALERT, settings)
    assert "refusing" in outcome["email"] and "hunter2" not in outcome["email"]
    assert sink.messages == []


def test_an_alert_is_posted_to_a_real_webhook_and_one_broken_channel_spares_the_other():
    with webhook() as receiver:
        unreachable = AlertSettings(smtp_host="127.0.0.1", smtp_port=9, smtp_from="fares@example.org",
                                    smtp_to=("ops@example.org",), webhook_url=url_of(receiver))
        assert send_alert(ALERT, unreachable) == {"email": "ConnectionRefusedError", "webhook": None}
    assert receiver.payloads == [webhook_payload(ALERT)]


def test_webhook_failures_are_reported_without_the_url():
    with webhook(status=500) as receiver:
        refused = send_alert(ALERT, AlertSettings(webhook_url=url_of(receiver)))
    gone = send_alert(ALERT, AlertSettings(webhook_url=url_of(receiver)))
    assert refused == {"webhook": "the webhook answered HTTP 500"}
    assert gone == {"webhook": "ConnectionError"}


# --- the Dagster wiring --------------------------------------------------------------------------

TINY_WATCHLIST = ("trips:\n"
                  "  - {origin: SFO, destination: JFK, nights: [3], depart_days_ahead: {from: 1, to: 6, every: 3}}\n")


def collect_defs(tmp_path: Path, base_url: str) -> Definitions:
    watchlist = tmp_path / "watchlist.yaml"
    watchlist.write_text(TINY_WATCHLIST)
    fare_source = FareSourceResource(base_url=base_url, watchlist_path=str(watchlist),
                                     rate_per_second=500)
    return Definitions(assets=[raw_fare_quotes], jobs=[collect_job, backfill_job],
                       resources={"fare_source": fare_source, "lake": LakeResource(root=str(tmp_path / "lake"))})


def lake_records(tmp_path: Path) -> list[dict]:
    objects = sorted(path for path in (tmp_path / "lake" / RAW_PREFIX).rglob("*")
                     if path.is_file() and not path.name.startswith("."))
    return [json.loads(line) for path in objects for line in path.read_text().splitlines()]


def test_a_replayed_history_keeps_to_a_grid_so_a_later_rerun_repeats_its_market_times():
    days = [dt.datetime(2026, 11, day, tzinfo=UTC) for day in (26, 27, 28)]
    # At 08:13 and at 17:40 the same day, two days of daily sweeps are the same midnights, then the current hour.
    assert collection_times(2, 24, days[2].replace(hour=8, minute=13)) == [*days[1:], days[2].replace(hour=8)]
    assert collection_times(2, 24, days[2].replace(hour=17, minute=40)) == [*days[1:], days[2].replace(hour=17)]
    assert collection_times(2, 24, days[2]) == days
    # Only what the warehouse does not hold yet; nothing when it holds this hour's.
    assert collection_times(2, 24, days[2].replace(hour=9), after=days[1].replace(hour=10)) == [
        days[2], days[2].replace(hour=9)]
    assert collection_times(2, 24, days[2].replace(hour=9), after=days[2].replace(hour=9)) == []
    assert collection_times(0, 24, days[2]) == [None]
    # An end with nothing to replay would stamp a live sweep with it.
    with pytest.raises(ValueError, match="history_until='2026-11-28T00:00:00Z' ends a replayed history"):
        sweep_times(0, 24, "", "", days[2], history_until="2026-11-28T00:00:00Z")
    assert sweep_times(2, 24, "", "", days[2], history_until="2026-11-28T00:00:00Z") == days


def test_replay_times_cover_the_period_and_refuse_nonsense():
    start = dt.datetime(2026, 10, 1, tzinfo=UTC)
    assert replay_times(start, start + dt.timedelta(hours=30), 12) == [
        start, start + dt.timedelta(hours=12), start + dt.timedelta(hours=24)]
    with pytest.raises(ValueError, match="after it ends"):
        replay_times(start, start - dt.timedelta(hours=1), 12)
    with pytest.raises(ValueError, match="every_hours must be positive"):
        replay_times(start, start, 0)


@pytest.mark.parametrize("job_name, run_config", [
    ("backfill_fares", {"start": "2026-10-01T00:00:00Z", "end": "2026-10-02T00:00:00Z", "every_hours": 12}),
    ("collect_fares", {"ops": {"raw_fare_quotes": {"config": {
        "history_days": 1, "every_hours": 12, "history_until": "2026-10-02T00:00:00+00:00"}}}}),
])
def test_a_backfill_replays_the_period_on_the_market_clock(tmp_path, market_url, job_name, run_config):
    defs = collect_defs(tmp_path, market_url)
    with DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def(job_name).execute_in_process(instance=instance, run_config=run_config)
    metadata = result.asset_materializations_for_node("raw_fare_quotes")[0].metadata
    records = lake_records(tmp_path)
    assert {record["collected_at"] for record in records} == {
        "2026-10-01T00:00:00Z", "2026-10-01T12:00:00Z", "2026-10-02T00:00:00Z"}
    assert {record["status"] for record in records} == {200}
    assert metadata["sweeps"].value == 3 and metadata["sweeps_without_success"].value == 0
    assert metadata["calls"].value == metadata["records_delivered"].value == len(records) == 6


def test_sweeps_without_a_successful_call_are_alerted(tmp_path, alert_env):
    with provider(default="bad_request_400") as (_, url), webhook() as receiver:
        alert_env.setenv("FARES_ALERT_WEBHOOK_URL", url_of(receiver))
        with DagsterInstance.ephemeral() as instance:
            result = collect_defs(tmp_path, url).resolve_job_def("backfill_fares").execute_in_process(
                instance=instance, run_config={"start": "2026-10-01T00:00:00Z", "end": "2026-10-01T12:00:00Z"})
    metadata = result.asset_materializations_for_node("raw_fare_quotes")[0].metadata
    assert metadata["sweeps_without_success"].value == 2
    assert metadata["failures_by_kind"].value == {"client_error": 4}
    [payload] = receiver.payloads
    assert payload["kind"] == "sweeps_without_success" and payload["job"] == "backfill_fares"
    assert payload["run_id"] == result.run_id
    assert payload["sweeps"] == [
        {"at": "2026-10-01T00:00:00Z", "calls": 2, "failures_by_kind": {"client_error": 2}},
        {"at": "2026-10-01T12:00:00Z", "calls": 2, "failures_by_kind": {"client_error": 2}}]


def failing_backfill(tmp_path, instance):
    """A collection run that fails at once: its period ends before it starts."""
    return collect_defs(tmp_path, "http://127.0.0.1:9").resolve_job_def("backfill_fares").execute_in_process(
        instance=instance, raise_on_error=False,
        run_config={"start": "2026-10-02T00:00:00Z", "end": "2026-10-01T00:00:00Z"})


def alert_tick(instance, cursor=None):
    """One evaluation of the failed-run sensor, as the daemon runs it: (skip reason, cursor)."""
    result = failed_run_alert.evaluate_tick(build_sensor_context(instance=instance, cursor=cursor))
    return result.skip_message, result.cursor


def test_the_sensor_alerts_on_a_failed_collection_run(tmp_path, alert_env):
    with DagsterInstance.ephemeral() as instance, webhook() as receiver:
        _, cursor = alert_tick(instance)
        unheard = failing_backfill(tmp_path, instance)
        skipped, cursor = alert_tick(instance, cursor)
        alert_env.setenv("FARES_ALERT_WEBHOOK_URL", url_of(receiver))
        _, cursor = alert_tick(instance, cursor)
        result = failing_backfill(tmp_path, instance)
        _, cursor = alert_tick(instance, cursor)
    # A run that failed while no channel was configured is not alerted once one is.
    assert not unheard.success and skipped == NO_CHANNEL
    [payload] = receiver.payloads
    assert (payload["kind"], payload["job"], payload["run_id"]) == ("run_failed", "backfill_fares", result.run_id)
    [step_error] = payload["step_errors"]
    assert step_error.startswith("raw_fare_quotes: ") and "starts (2026-10-02T00:00:00Z) after it ends" in step_error
    assert "re-execute it from the Dagster UI" in payload["text"]


def test_an_alert_waits_for_the_channel_that_was_down_and_only_for_it(tmp_path, alert_env):
    with DagsterInstance.ephemeral() as instance, serving(SmtpSink()) as sink, webhook(status=503) as receiver:
        alert_env.setenv("FARES_ALERT_SMTP_HOST", "127.0.0.1")
        alert_env.setenv("FARES_ALERT_SMTP_PORT", str(sink.server_address[1]))
        alert_env.setenv("FARES_ALERT_SMTP_FROM", "fares@example.org")
        alert_env.setenv("FARES_ALERT_SMTP_TO", "ops@example.org")
        alert_env.setenv("FARES_ALERT_WEBHOOK_URL", url_of(receiver))
        _, cursor = alert_tick(instance)
        runs = [failing_backfill(tmp_path, instance).run_id for _ in range(2)]
        while_down, cursor = alert_tick(instance, cursor)
        attempts_while_down = len(receiver.payloads)
        receiver.status = 204
        _, cursor = alert_tick(instance, cursor)
        settled, cursor = alert_tick(instance, cursor)
    assert [message["Subject"].split()[3] for _, message in sink.messages] == [run[:8] for run in runs]
    assert "2 alert(s) wait" in while_down and "webhook" in while_down and "email" not in while_down
    # The webhook that answered 503 is tried once in that tick, not once per waiting alert.
    assert attempts_while_down == 1
    assert [payload["run_id"] for payload in receiver.payloads[1:]] == runs
    assert settled == "0 new failed run(s); no alert waiting"


def test_an_alert_that_reached_nobody_goes_to_the_channel_configured_next(tmp_path, alert_env):
    with DagsterInstance.ephemeral() as instance, serving(SmtpSink()) as sink, webhook(status=503) as receiver:
        alert_env.setenv("FARES_ALERT_WEBHOOK_URL", url_of(receiver))
        _, cursor = alert_tick(instance)
        run_id = failing_backfill(tmp_path, instance).run_id
        _, cursor = alert_tick(instance, cursor)
        # The operator gives up on the webhook and configures mail instead.
        alert_env.delenv("FARES_ALERT_WEBHOOK_URL")
        alert_env.setenv("FARES_ALERT_SMTP_HOST", "127.0.0.1")
        alert_env.setenv("FARES_ALERT_SMTP_PORT", str(sink.server_address[1]))
        alert_env.setenv("FARES_ALERT_SMTP_FROM", "fares@example.org")
        alert_env.setenv("FARES_ALERT_SMTP_TO", "ops@example.org")
        settled, cursor = alert_tick(instance, cursor)
    assert [payload["run_id"] for payload in receiver.payloads] == [run_id]
    assert [message["Subject"].split()[3] for _, message in sink.messages] == [run_id[:8]]
    assert settled == "0 new failed run(s); no alert waiting"


def test_a_burst_of_failures_waits_to_be_read_rather_than_being_given_up(tmp_path, alert_env, monkeypatch):
    monkeypatch.setattr(run_alerts, "MAX_WAITING", 1)
    with DagsterInstance.ephemeral() as instance, webhook(status=503) as receiver:
        alert_env.setenv("FARES_ALERT_WEBHOOK_URL", url_of(receiver))
        _, cursor = alert_tick(instance)
        runs = [failing_backfill(tmp_path, instance).run_id for _ in range(2)]
        _, cursor = alert_tick(instance, cursor)
        receiver.status = 204
        for _ in range(2):
            _, cursor = alert_tick(instance, cursor)
    # One alert fits in the queue: the second run is read once the first alert has gone, and is not lost.
    assert [payload["run_id"] for payload in receiver.payloads] == [runs[0], runs[0], runs[1]]
    assert json.loads(cursor)["waiting"] == {}


def test_waiting_alerts_go_to_the_channels_that_have_not_taken_them_until_the_deadline():
    with webhook() as receiver:
        settings = AlertSettings(webhook_url=url_of(receiver))
        waiting = {key: {"sent": sent, "since": 0} for key, sent in (
            ("deleted", []), ("a", []), ("b", ["email"]), ("taken", ["webhook"]), ("c", []))}
        alerts = {key: run_failure_alert("collect_fares", key, "failed", []) for key in "abc"}
        clock = iter([0, 1, 2, 3])
        down = send_waiting(waiting, settings, alerts.get, deadline=2.5, clock=lambda: next(clock))
        failing = send_waiting(waiting, settings, lambda key: 1 / 0, deadline=float("inf"))
    # A deleted run is dropped, so is an alert every configured channel took; the clock passes the deadline at "c".
    assert down == {} and [payload["run_id"] for payload in receiver.payloads] == ["a", "b"]
    assert failing == {"building alerts": "ZeroDivisionError"} and waiting == {"c": {"sent": [], "since": 0}}


def test_the_alert_cursor_goes_on_from_the_run_failure_sensors_and_restarts_from_anything_else():
    old = '{"__class__": "RunStatusSensorCursor", "record_id": 12, "record_timestamp": null, "update_timestamp": null}'
    assert cursor_state(old) == {"after": 12, "waiting": {}}
    assert cursor_state('{"after": 3, "waiting": {}}') == {"after": 3, "waiting": {}}
    assert [cursor_state(cursor) for cursor in (None, "0", "not json", '{"after": "3"}')] == [None] * 4


def test_a_failed_run_of_any_job_is_alerted_by_the_sensors_own_tick(tmp_path, alert_env):
    # The serving refresh cannot reach its warehouse; the sensor, evaluated as the daemon does, finds the failed run
    # in the instance's event log (the structuring and load jobs are watched the same way: every job is).
    resources = {**local_resources(), "lake": LakeResource(root=str(tmp_path / "lake")),
                 "warehouse_db": WarehouseResource(dsn="postgresql://fares@127.0.0.1:9/warehouse?connect_timeout=2")}
    with DagsterInstance.ephemeral() as instance, webhook() as receiver:
        alert_env.setenv("FARES_ALERT_WEBHOOK_URL", url_of(receiver))
        started = failed_run_alert.evaluate_tick(build_sensor_context(instance=instance))
        result = build_defs(resources).resolve_job_def("serve_trips").execute_in_process(
            instance=instance, raise_on_error=False)
        failed_run_alert.evaluate_tick(build_sensor_context(instance=instance, cursor=started.cursor))
    assert not result.success
    [payload] = receiver.payloads
    assert (payload["job"], payload["run_id"]) == ("serve_trips", result.run_id)
    assert [error.split(":")[0] for error in payload["step_errors"]] == ["trip_serving_tables"]


def test_a_failed_run_names_its_landing_hours():
    assert run_partitions({"dagster/partition": "2026-12-05-08:00"}) == "2026-12-05-08:00"
    assert run_partitions({"dagster/asset_partition_range_start": "2026-12-05-08:00",
                           "dagster/asset_partition_range_end": "2026-12-05-11:00"}) == (
        "2026-12-05-08:00 … 2026-12-05-11:00")
    assert run_partitions({}) is None
    alert = run_failure_alert("structure_landing_hour", "0123456789abcdef", "failed", [], "2026-12-05-08:00")
    assert "structure_landing_hour for 2026-12-05-08:00 failed" in alert.text
