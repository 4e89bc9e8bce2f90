"""The market simulator as a real HTTP server speaking the QPX Express protocol.

`POST /qpxExpress/v1/trips/search[?key=...]` with a QPX request body answers a QPX response. The
simulated clock is set per request by the header `X-Market-Time: 2026-10-01T12:00:00Z` (ISO 8601,
UTC); without it the market trades at the real time. Errors are JSON, never stack traces:
400 `{"error": {"code": 400, "message": ..., "field": ...}}` for malformed requests, 404 for unknown
paths, 500 with a generic message (the details go to the log). `GET /healthz` answers
`{"status": "ok"}`. Requests are not logged unless FARES_MARKET_ACCESS_LOG is set.
"""
import json
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from fare_assets.market.pricing import DEFAULT_PARAMS, Market, MarketError, MarketParams, PastDeparture
from fare_assets.market.qpx import BadRequest, make_request_id, parse_request, render_response

SEARCH_PATH = "/qpxExpress/v1/trips/search"
HEALTH_PATH = "/healthz"
TIME_HEADER = "X-Market-Time"
ACCESS_LOG_ENV = "FARES_MARKET_ACCESS_LOG"
# Bigger bodies are not QPX requests; refusing them keeps a stray upload from tying up a thread.
MAX_BODY_BYTES = 64 * 1024

log = logging.getLogger(__name__)


class MarketServer(ThreadingHTTPServer):
    """A threading HTTP server holding one market."""

    def __init__(self, address: tuple[str, int], market: Market) -> None:
        super().__init__(address, MarketRequestHandler)
        self.market = market

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


def _market_time(header: str | None) -> datetime:
    """The moment the market trades at: the header's UTC time, or now."""
    if header is None:
        return datetime.now(timezone.utc)
    try:
        moment = datetime.fromisoformat(header.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(TIME_HEADER, f"must be an ISO 8601 UTC time like 2026-10-01T12:00:00Z, not {header!r}") from None
    if moment.tzinfo is None or moment.utcoffset().total_seconds() != 0:
        raise BadRequest(TIME_HEADER, "must be in UTC (end with Z or +00:00)")
    return moment


class MarketRequestHandler(BaseHTTPRequestHandler):
    """Routes requests to the market and turns every failure into a JSON error."""

    server: MarketServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out as separate writes; with Nagle on, the body waits for the client's
    # delayed ACK (about 40 ms a call on keep-alive connections).
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == HEALTH_PATH:
            self._send(200, {"status": "ok"})
        else:
            self._error(404, f"no such resource: GET {path}")

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path != SEARCH_PATH:
            self._drain()
            self._error(404, f"no such resource: POST {path}")
            return
        try:
            moment, answer = self._search()
            # Said back, so a client replaying a past moment knows the answer is for it (a live endpoint would
            # answer for now without a word).
            self._send(200, answer, {TIME_HEADER: moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")})
        except BadRequest as error:
            self._error(400, error.message, error.field)
        except MarketError as error:
            field = "request.slice[0].date" if isinstance(error, PastDeparture) else "request"
            self._error(400, str(error), field)
        except Exception:
            log.exception("market search failed")
            self._error(500, "internal error in the market simulator")

    def _search(self) -> tuple[datetime, dict]:
        """The market moment answered for, and the answer."""
        body = self._read_json()
        moment = _market_time(self.headers.get(TIME_HEADER))
        query, solutions = parse_request(body)
        options = self.server.market.search(query, moment, solutions)
        request_id = make_request_id(self.server.market.params.seed, json.dumps(body, sort_keys=True), moment.isoformat())
        return moment, render_response(query, options, request_id)

    def _read_json(self) -> object:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            raise BadRequest("body", "a JSON body with a Content-Length is required")
        if int(length) > MAX_BODY_BYTES:
            self.close_connection = True
            raise BadRequest("body", f"larger than {MAX_BODY_BYTES} bytes")
        raw = self.rfile.read(int(length))
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise BadRequest("body", f"not valid JSON: {error}") from None

    def _drain(self) -> None:
        """Read an unwanted body so the connection stays usable for the next request."""
        length = self.headers.get("Content-Length", "0")
        if length.isdigit() and int(length) <= MAX_BODY_BYTES:
            self.rfile.read(int(length))
        else:
            self.close_connection = True

    def _error(self, status: int, message: str, field: str | None = None) -> None:
        error = {"code": status, "message": message}
        if field is not None:
            error["field"] = field
        self._send(status, {"error": error})

    def _send(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        if os.environ.get(ACCESS_LOG_ENV):
            super().log_message(format, *args)


def make_server(host: str, port: int, params: MarketParams) -> MarketServer:
    """A market server bound to host:port (port 0 picks a free one); call serve_forever() to run it."""
    return MarketServer((host, port), Market(params))


@contextmanager
def market_in_thread() -> Iterator[str]:
    """A market server on a free local port, served by a background thread; yields its base URL."""
    server = make_server("127.0.0.1", 0, DEFAULT_PARAMS)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()
