"""Fake Duffel and Amadeus servers for tests: real HTTP, the providers' real formats, auth and 429.

Answers are built from the real fixtures' offers (every field the real API sends stays), with the
airports, dates, passengers and prices of the request. `refuse(n)` makes the next n searches answer
429 with the provider's rate-limit headers; Amadeus tokens expire (`expire_tokens()`).
"""
import copy
import datetime as dt
import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import airportsdata

from fare_assets_tests.conftest import load_fixture

_AIRPORTS = airportsdata.load("IATA")
# Who flies and who sells, per offer position: a plain flight, a codeshare, another airline's ticket.
_CARRIERS = [("BA", "British Airways"), ("AA", "American Airlines"), ("IB", "Iberia")]
DUFFEL_VERSION = "v2"


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _times(origin: str, destination: str, date: str, offer_no: int) -> tuple[dt.datetime, dt.datetime, int]:
    """Local departure and arrival of a flight leaving at 08:00 + 2 h per offer, 2 h 30 + 30 min per offer long."""
    minutes = 150 + 30 * offer_no
    departs = dt.datetime.fromisoformat(f"{date}T{8 + 2 * offer_no:02d}:00:00").replace(
        tzinfo=ZoneInfo(_AIRPORTS[origin]["tz"]))
    arrives = (departs + dt.timedelta(minutes=minutes)).astimezone(ZoneInfo(_AIRPORTS[destination]["tz"]))
    return departs, arrives, minutes


def _local(moment: dt.datetime) -> str:
    return moment.replace(tzinfo=None).isoformat(timespec="seconds")


class Countdown:
    """How many of the next requests a fake answers with a failure: `add` more, `take` one (thread-safe)."""

    def __init__(self) -> None:
        self._left = 0
        self._lock = threading.Lock()

    def add(self, requests: int) -> None:
        with self._lock:
            self._left += requests

    def take(self) -> bool:
        with self._lock:
            if self._left:
                self._left -= 1
                return True
            return False


class FakeProviderServer(ThreadingHTTPServer):
    """A threaded server that records every request and can refuse searches with 429."""

    daemon_threads = True

    def __init__(self, handler, offers_per_search: int, currency: str):
        super().__init__(("127.0.0.1", 0), handler)
        self.offers_per_search = offers_per_search
        self.currency = currency
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self.answers: list[dict] = []
        self.refusals = Countdown()
        self.gateway_errors = Countdown()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def refuse(self, searches: int) -> None:
        """Answer the next `searches` searches with 429."""
        self.refusals.add(searches)

    def fail(self, searches: int) -> None:
        """Answer the next `searches` searches with a gateway's 502 (no Retry-After)."""
        self.gateway_errors.add(searches)

    def searches(self) -> list[dict]:
        return [request for request in self.requests if request["search"]]


class _Handler(BaseHTTPRequestHandler):
    server: FakeProviderServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def _record(self, search: bool, body: bytes) -> dict:
        parts = urlsplit(self.path)
        request = {"method": self.command, "path": parts.path, "query": parse_qs(parts.query),
                   "headers": {name.lower(): value for name, value in self.headers.items()},
                   "body": body.decode() if body else "", "search": search}
        with self.server.lock:
            self.server.requests.append(request)
        return request

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))

    def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        pass


# --- Duffel ---------------------------------------------------------------------------------------

class _DuffelHandler(_Handler):
    server: "FakeDuffel"

    def _rate_headers(self, remaining: int, reset_in: float) -> dict:
        reset = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=reset_in)
        return {"ratelimit-limit": "120", "ratelimit-remaining": str(remaining),
                "ratelimit-reset": format_datetime(reset, usegmt=True)}

    def _error(self, status: int, kind: str, code: str, message: str, headers: dict | None = None) -> None:
        self._send(status, {"errors": [{"type": kind, "code": code, "title": message, "message": message,
                                        "documentation_url": "https://duffel.com/docs/api/overview/errors"}],
                            "meta": {"status": status, "request_id": _digest(self.path, time.time())}}, headers)

    def do_POST(self) -> None:
        body = self._body()
        parts = urlsplit(self.path)
        if parts.path != "/air/offer_requests":
            self._record(False, body)
            self._error(404, "invalid_request_error", "not_found", "The resource you are trying to access does not exist")
            return
        request = self._record(True, body)
        if request["headers"].get("authorization") != f"Bearer {self.server.token}":
            self._error(401, "authentication_error", "unauthorized", "The access token used is not valid")
            return
        if request["headers"].get("duffel-version") != DUFFEL_VERSION:
            self._error(400, "invalid_request_error", "unsupported_version",
                        "The Duffel-Version header is missing or not a supported version")
            return
        if self.server.refusals.take():
            self._error(429, "rate_limit_error", "rate_limit_exceeded", "Too many requests",
                        self._rate_headers(0, self.server.reset_seconds))
            return
        if self.server.gateway_errors.take():
            # Duffel reports its window on every answer, a failed one too.
            self._error(502, "api_error", "bad_gateway", "Bad gateway", self._rate_headers(100, 55))
            return
        try:
            data = json.loads(body)["data"]
            slices, passengers, cabin = data["slices"], data["passengers"], data["cabin_class"]
        except (ValueError, KeyError, TypeError):
            self._error(422, "validation_error", "invalid_body",
                        "data.slices, data.passengers and data.cabin_class are required")
            return
        answer = self.server.offer_request(slices, passengers, cabin, request["query"].get("return_offers") == ["true"])
        with self.server.lock:
            self.server.answers.append(answer)
        self._send(201, answer, self._rate_headers(self.server.remaining_after_search, 60))


class FakeDuffel(FakeProviderServer):
    """Duffel's `POST /air/offer_requests` in test mode: bearer token, Duffel-Version, ratelimit-* headers."""

    def __init__(self, token: str, offers_per_search: int = 3, currency: str = "GBP", reset_seconds: float = 1.0,
                 remaining_after_search: int = 119):
        super().__init__(_DuffelHandler, offers_per_search, currency)
        self.token = token
        self.remaining_after_search = remaining_after_search
        self.reset_seconds = reset_seconds
        template = load_fixture("duffel/duffel_01.json")["data"]
        self._request_template = {key: value for key, value in template.items() if key != "offers"}
        # The fixture's first offer with a codeshare shows every field a segment can have.
        self._offer_template = template["offers"][0]

    def _place(self, code: str) -> dict:
        airport = _AIRPORTS[code]
        place = copy.deepcopy(self._offer_template["slices"][0]["segments"][0]["origin"])
        place.update({"iata_code": code, "name": airport["name"], "iata_city_code": code, "city_name": airport["city"],
                      "time_zone": airport["tz"], "iata_country_code": airport["country"], "id": f"arp_{code.lower()}",
                      "icao_code": airport["icao"] or None, "latitude": airport["lat"], "longitude": airport["lon"]})
        place["city"] = {**place["city"], "iata_code": code, "name": airport["city"], "id": f"cit_{code.lower()}"}
        return place

    def _segment(self, request_slice: dict, passenger_ids: list[str], cabin: str, offer_no: int) -> dict:
        origin, destination = request_slice["origin"], request_slice["destination"]
        departs, arrives, minutes = _times(origin, destination, request_slice["departure_date"], offer_no)
        code, name = _CARRIERS[offer_no % len(_CARRIERS)]
        segment = copy.deepcopy(self._offer_template["slices"][0]["segments"][0])
        operating_code, operating_name = _CARRIERS[(offer_no + 1) % len(_CARRIERS)] if offer_no == 1 else (code, name)
        segment.update({
            "id": f"seg_{_digest(origin, destination, departs, offer_no)}", "origin": self._place(origin),
            "destination": self._place(destination), "departing_at": _local(departs), "arriving_at": _local(arrives),
            # Zero-padded like the Sydney fixture.
            "duration": f"PT{minutes // 60:02d}H{minutes % 60:02d}M",
            "marketing_carrier": {"iata_code": code, "name": name, "id": f"arl_{code}"},
            "marketing_carrier_flight_number": str(100 + offer_no),
            "operating_carrier": {"iata_code": operating_code, "name": operating_name, "id": f"arl_{operating_code}"},
            # Codeshares come without the operating flight number, as in the JFK fixture.
            "operating_carrier_flight_number": None if offer_no == 1 else str(100 + offer_no),
            "distance": None if offer_no == 1 else "1000.0", "aircraft": None,
            "passengers": [{"passenger_id": passenger_id, "fare_basis_code": f"Y{offer_no}LOW", "cabin_class": cabin,
                            "cabin_class_marketing_name": cabin.title(), "baggages": [{"type": "checked", "quantity": 1}]}
                           for passenger_id in passenger_ids],
        })
        return segment

    def offer_request(self, slices: list[dict], passengers: list[dict], cabin: str, return_offers: bool) -> dict:
        request_id = f"orq_{_digest(slices, passengers, cabin, time.time())}"
        passenger_rows = [{"id": f"pas_{request_id[4:12]}{number}", "type": passenger.get("type"),
                           "age": passenger.get("age"), "given_name": None, "family_name": None,
                           "loyalty_programme_accounts": []} for number, passenger in enumerate(passengers)]
        answer = {**copy.deepcopy(self._request_template), "id": request_id, "cabin_class": cabin,
                  "passengers": passenger_rows,
                  "slices": [{"origin": self._place(s["origin"]), "destination": self._place(s["destination"]),
                              "departure_date": s["departure_date"], "origin_type": "airport",
                              "destination_type": "airport"} for s in slices]}
        if not return_offers:
            return {"data": answer}
        offers = []
        for offer_no in range(self.offers_per_search):
            base = Decimal("120.00") * len(passengers) + 35 * offer_no
            tax = Decimal("21.10") * len(passengers)
            offer = copy.deepcopy(self._offer_template)
            offer_slices = []
            for request_slice in slices:
                segment = self._segment(request_slice, [row["id"] for row in passenger_rows], cabin, offer_no)
                offer_slice = copy.deepcopy(self._offer_template["slices"][0])
                offer_slice.update({"id": f"sli_{segment['id'][4:]}", "segments": [segment],
                                    "origin": segment["origin"], "destination": segment["destination"],
                                    "duration": segment["duration"]})
                offer_slices.append(offer_slice)
            offer.update({
                "id": f"off_{_digest(request_id, offer_no)}", "slices": offer_slices,
                "passengers": [{key: row[key] for key in ("id", "type", "age")} for row in passenger_rows],
                "total_amount": str(base + tax), "total_currency": self.currency,
                "base_amount": str(base), "base_currency": self.currency,
                "tax_amount": str(tax), "tax_currency": self.currency,
                "owner": offer_slices[0]["segments"][0]["marketing_carrier"] if offer_slices else offer["owner"],
            })
            offers.append(offer)
        answer["offers"] = offers
        return {"data": answer}


# --- Amadeus --------------------------------------------------------------------------------------

class _AmadeusHandler(_Handler):
    server: "FakeAmadeus"

    def _errors(self, status: int, code: int, title: str, detail: str, headers: dict | None = None) -> None:
        self._send(status, {"errors": [{"status": status, "code": code, "title": title, "detail": detail}]}, headers)

    def do_POST(self) -> None:
        body = self._body()
        self._record(False, body)
        if urlsplit(self.path).path != "/v1/security/oauth2/token":
            self._errors(404, 38196, "Resource not found", "The targeted resource doesn't exist")
            return
        if self.server.token_outages.take():
            self._send(503, {"error": "server_error", "error_description": "Service temporarily unavailable"})
            return
        form = {key: values[0] for key, values in parse_qs(body.decode()).items()}
        if form.get("grant_type") != "client_credentials":
            self._send(400, {"error": "unsupported_grant_type", "code": 38187, "title": "Invalid parameters",
                             "error_description": "Only client_credentials value is allowed for grant_type"})
            return
        if (form.get("client_id"), form.get("client_secret")) != (self.server.client_id, self.server.client_secret):
            self._send(401, {"error": "invalid_client", "error_description": "Client credentials are invalid",
                             "code": 38187, "title": "Invalid parameters"})
            return
        token = self.server.issue_token()
        self._send(200, {"type": "amadeusOAuth2Token", "username": "fares@example.com", "application_name": "fares",
                         "client_id": self.server.client_id, "token_type": "Bearer", "access_token": token,
                         "expires_in": self.server.expires_in, "state": "approved", "scope": ""})

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path != "/v2/shopping/flight-offers":
            self._record(False, b"")
            self._errors(404, 38196, "Resource not found", "The targeted resource doesn't exist")
            return
        request = self._record(True, b"")
        token = request["headers"].get("authorization", "").removeprefix("Bearer ")
        if not self.server.token_valid(token):
            self._errors(401, 38192, "Invalid access token", "The access token provided in the Authorization header is invalid")
            return
        if self.server.refusals.take():
            self._errors(429, 38194, "Too many requests", "The network rate limit is exceeded, please try again later",
                         {"Retry-After": str(self.server.retry_after_seconds)})
            return
        query = {key: values[0] for key, values in request["query"].items()}
        try:
            answer = self.server.flight_offers(query)
        except (KeyError, ValueError) as error:
            self._errors(400, 477, "INVALID FORMAT", f"missing or invalid query parameter {error}")
            return
        with self.server.lock:
            self.server.answers.append(answer)
        self._send(200, answer)


class FakeAmadeus(FakeProviderServer):
    """Amadeus Flight Offers Search: OAuth2 client-credentials tokens that expire, 401 on a bad token."""

    def __init__(self, client_id: str, client_secret: str, offers_per_search: int = 3, currency: str = "EUR",
                 expires_in: int = 1799, retry_after_seconds: int = 1, searches_per_token: int | None = None):
        super().__init__(_AmadeusHandler, offers_per_search, currency)
        self.client_id = client_id
        self.client_secret = client_secret
        self.expires_in = expires_in
        self.retry_after_seconds = retry_after_seconds
        # A token that dies after this many searches: expiry in the middle of a sweep, without waiting.
        self.searches_per_token = searches_per_token
        self._uses: Counter = Counter()
        self._tokens: dict[str, float] = {}
        self.tokens_issued = 0
        # The next token requests answered with 503 (the token endpoint overloaded).
        self.token_outages = Countdown()
        self._offer_template = load_fixture("amadeus/amadeus_02.json")["data"][0]

    def issue_token(self) -> str:
        with self.lock:
            self.tokens_issued += 1
            token = _digest(self.client_id, self.tokens_issued, time.time())
            self._tokens[token] = time.monotonic() + self.expires_in
            return token

    def token_valid(self, token: str) -> bool:
        with self.lock:
            self._uses[token] += 1
            if self.searches_per_token is not None and self._uses[token] > self.searches_per_token:
                return False
            return self._tokens.get(token, 0) > time.monotonic()

    def expire_tokens(self) -> None:
        """Every token issued so far expires now (as if their lifetime had passed)."""
        with self.lock:
            self._tokens = dict.fromkeys(self._tokens, 0.0)

    def _segment(self, origin: str, destination: str, date: str, offer_no: int, segment_id: str) -> dict:
        departs, arrives, minutes = _times(origin, destination, date, offer_no)
        code = _CARRIERS[offer_no % len(_CARRIERS)][0]
        segment = copy.deepcopy(self._offer_template["itineraries"][0]["segments"][0])
        segment.update({"id": segment_id, "carrierCode": code, "number": str(200 + offer_no),
                        "departure": {"iataCode": origin, "at": _local(departs)},
                        "arrival": {"iataCode": destination, "at": _local(arrives)},
                        "duration": f"PT{minutes // 60}H{minutes % 60}M", "aircraft": {"code": "320"}})
        if offer_no == 1:
            segment["operating"] = {"carrierCode": _CARRIERS[(offer_no + 1) % len(_CARRIERS)][0]}
        else:
            # The Rio fixture has a segment without an operating object: the marketing carrier flies it.
            segment.pop("operating", None)
        return segment

    def flight_offers(self, query: dict) -> dict:
        origin, destination = query["originLocationCode"], query["destinationLocationCode"]
        directions = [(origin, destination, query["departureDate"])]
        if query.get("returnDate"):
            directions.append((destination, origin, query["returnDate"]))
        travelers = ["ADULT"] * int(query["adults"]) + ["CHILD"] * int(query.get("children", 0))
        cabin = query.get("travelClass", "ECONOMY")
        offers = []
        for offer_no in range(min(self.offers_per_search, int(query.get("max", 250)))):
            itineraries = []
            for slice_no, (start, end, date) in enumerate(directions):
                segment = self._segment(start, end, date, offer_no, str(slice_no + 1))
                itineraries.append({"duration": segment["duration"], "segments": [segment]})
            segment_ids = [segment["id"] for itinerary in itineraries for segment in itinerary["segments"]]
            pricings = []
            for traveler_no, traveler_type in enumerate(travelers, 1):
                base = Decimal("200.00") + 40 * offer_no - (50 if traveler_type == "CHILD" else 0)
                total = base + Decimal("45.37")
                pricings.append({
                    "travelerId": str(traveler_no), "fareOption": "STANDARD", "travelerType": traveler_type,
                    "price": {"currency": self.currency, "total": f"{total:.2f}", "base": f"{base:.2f}"},
                    "fareDetailsBySegment": [
                        {"segmentId": segment_id, "cabin": cabin, "fareBasis": f"V{offer_no}SAVER", "class": "V",
                         **({"includedCheckedBags": {"quantity": 1}} if traveler_type == "ADULT" else {})}
                        for segment_id in segment_ids],
                })
            total = sum(Decimal(p["price"]["total"]) for p in pricings)
            base = sum(Decimal(p["price"]["base"]) for p in pricings)
            offer = copy.deepcopy(self._offer_template)
            offer.update({
                "id": str(offer_no + 1), "oneWay": len(directions) == 1, "itineraries": itineraries,
                "price": {"currency": self.currency, "total": f"{total:.2f}", "base": f"{base:.2f}",
                          "fees": [{"amount": "0.00", "type": "SUPPLIER"}, {"amount": "0.00", "type": "TICKETING"}],
                          "grandTotal": f"{total:.2f}"},
                # The ticketing airline is neither the marketing nor the operating one on the third offer.
                "validatingAirlineCodes": ["LH" if offer_no == 2 else _CARRIERS[offer_no % len(_CARRIERS)][0]],
                "travelerPricings": pricings,
            })
            offers.append(offer)
        codes = {code for start, end, _ in directions for code in (start, end)}
        return {
            "meta": {"count": len(offers), "links": {"self": f"{self.url}/v2/shopping/flight-offers"}},
            "data": offers,
            "dictionaries": {
                "locations": {code: {"cityCode": code, "countryCode": _AIRPORTS[code]["country"]} for code in codes},
                "aircraft": {"320": "AIRBUS A320"},
                "currencies": {self.currency: self.currency},
                "carriers": {code: name.upper() for code, name in _CARRIERS} | {"LH": "LUFTHANSA"},
            },
        }


@contextmanager
def serving(server: FakeProviderServer) -> Iterator[FakeProviderServer]:
    """Run a fake provider on its free local port for the duration of the block."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
