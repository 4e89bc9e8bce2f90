import datetime as dt
import json
import re
import time
from pathlib import Path

import pytest

from fare_assets.storing.lake import RAW_PREFIX, landing_hour_of_key, raw_object_key
from fare_assets.streaming.collector import SweepStats, sweep
from fare_assets.streaming.delivery import LocalDeliveryStream
from fare_assets.streaming.envelope import envelope
from fare_assets.streaming.notify import providers_without_success_alert
from fare_assets.streaming.duffel_client import DuffelClient
from fare_assets.streaming.providers import CallResult, ProviderClients
from fare_assets.streaming.qpx_client import QpxClient
from fare_assets.streaming.watchlist import WatchlistError, load_watchlist
from fare_assets.settings import PROJECT_ROOT

FIREHOSE_KEY = re.compile(r"^raw/fares/\d{4}/\d{2}/\d{2}/\d{2}/[\w-]+-1-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}-[0-9a-f-]{36}$")
AT = dt.datetime(2026, 10, 1, 12, tzinfo=dt.timezone.utc)


def write_watchlist(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "watchlist.yaml"
    path.write_text(text)
    return path


def test_the_shipped_watchlist_is_valid_and_expands_to_aligned_round_trips():
    watchlist = load_watchlist(PROJECT_ROOT / "fare_assets" / "watchlist.yaml")
    trips = watchlist.trips_at(AT)
    assert trips and all(trip.return_date > trip.depart_date for trip in trips)
    assert all(trip.depart_date.toordinal() % 3 == 0 for trip in trips)
    later = watchlist.trips_at(AT + dt.timedelta(days=1))
    # A trip stays watched from one day to the next until it departs.
    assert {t for t in trips if t.depart_date > AT.date() + dt.timedelta(days=2)} <= set(later)


def test_the_watchlist_says_when_a_trips_collection_stops(tmp_path):
    path = write_watchlist(tmp_path, """trips:
  - {origin: SFO, destination: JFK, nights: [3, 7], depart_days_ahead: {from: 4, to: 60}}
  - {origin: SFO, destination: JFK, nights: [7], depart_days_ahead: {from: 2, to: 30}, provider: duffel}
  - {origin: SFO, destination: JFK, nights: [7], depart_days_ahead: {from: 1, to: 30}, cabin: BUSINESS}
  - {origin: LAX, destination: JFK, nights: [7], depart_days_ahead: {from: 1, to: 30, every: 3}}
""")
    watchlist = load_watchlist(path)
    depart = AT.date() + dt.timedelta(days=20)
    days = dt.timedelta(days=1)

    def last_day(origin="SFO", depart=depart, nights=7, adults=1, cabin="COACH"):
        return watchlist.last_collection_days_ahead(origin, "JFK", depart, depart + nights * days, adults, 0, cabin)

    # Two entries collect the 7-night economy trip: the one collecting longest decides.
    assert last_day() == 2 and last_day(nights=3) == 4 and last_day(cabin="BUSINESS") == 1
    # Not watched (any more): another length, party, cabin, or a departure off the entry's every-3-days grid.
    assert last_day(nights=5) is None and last_day(adults=2) is None and last_day(cabin="FIRST") is None
    on_grid = next(depart + offset * days for offset in range(3) if not (depart + offset * days).toordinal() % 3)
    assert last_day("LAX", on_grid) == 1 and last_day("LAX", on_grid + days) is None
    # Whatever it says, the entries do collect: the trip is in their sweep on its last day and not after.
    trip_day = dt.datetime.combine(depart - 2 * days, dt.time(12), dt.timezone.utc)
    collected = {(t.provider, t.return_date) for t in watchlist.trips_at(trip_day) if t.depart_date == depart}
    assert ("duffel", depart + 7 * days) in collected
    assert not [t for t in watchlist.trips_at(trip_day + days) if t.depart_date == depart and t.cabin == "COACH"]


@pytest.mark.parametrize("entry, field", [
    ("{origin: XXQ, destination: JFK, nights: [3], depart_days_ahead: {from: 1, to: 9}}", "trips[0].origin"),
    ("{origin: SFO, destination: JFK, nights: 3, depart_days_ahead: {from: 1, to: 9}}", "trips[0].nights"),
    ("{origin: SFO, destination: JFK, nights: [3], depart_days_ahead: {from: 9, to: 1}}", "trips[0].depart_days_ahead.to"),
    ("{origin: SFO, destination: JFK, nights: [3], depart_days_ahead: {from: 1, to: 9}, adults: 0}", "trips[0].adults"),
    ("{origin: SFO, destination: JFK, nights: [3], depart_days_ahead: {from: 1, to: 9}, cabin: ECONOMY}", "trips[0].cabin"),
    ("{origin: SFO, nights: [3], depart_days_ahead: {from: 1, to: 9}}", "trips[0].destination"),
])
def test_a_malformed_watchlist_names_the_file_and_the_field(tmp_path, entry, field):
    path = write_watchlist(tmp_path, f"trips:\n  - {entry}\n")
    with pytest.raises(WatchlistError) as error:
        load_watchlist(path)
    assert str(path) in str(error.value) and f"{field}:" in str(error.value)


def test_unparsable_yaml_is_a_clear_error(tmp_path):
    path = write_watchlist(tmp_path, "trips: [unclosed\n")
    with pytest.raises(WatchlistError, match="cannot read the watchlist"):
        load_watchlist(path)


def test_search_ids_are_stable_per_query_and_time():
    query = {"origin": "SFO", "destination": "JFK"}
    first, again = envelope("qpx", query, AT, 200, 5, response={}), envelope("qpx", query, AT, 200, 9, response={})
    later = envelope("qpx", query, AT + dt.timedelta(minutes=30), 200, 5, response={})
    assert first["search_id"] == again["search_id"] != later["search_id"]
    assert first["collected_at"] == "2026-10-01T12:00:00Z"


def test_local_stream_buffers_and_writes_firehose_keys(tmp_path):
    stream = LocalDeliveryStream(tmp_path, buffer_bytes=100, buffer_seconds=3600)
    stream.put_record_batch([b'{"a":1}\n'] * 5)
    assert stream.objects_written == []
    stream.put_record_batch([b'{"a":2}\n'] * 10)
    stream.put_record_batch([b'{"a":3}\n'])
    stream.flush()
    assert len(stream.objects_written) == 2 and stream.records_delivered == 16
    for key in stream.objects_written:
        assert FIREHOSE_KEY.match(key), key
        assert (tmp_path / key).read_bytes().endswith(b"\n")
    assert not list(tmp_path.rglob(".*.partial"))


def test_a_record_without_its_newline_is_refused_before_it_is_spooled(tmp_path):
    # Run into the next record, it would be read as one line and the second record lost.
    stream = LocalDeliveryStream(tmp_path)
    with pytest.raises(ValueError, match="every record must end with a newline"):
        stream.put_record_batch([b'{"a":1}\n', b'{"a":2}'])
    stream.flush()
    assert stream.records_delivered == 0 and stream.spool.waiting_records() == 0


def test_lake_key_layout_round_trips_the_landing_hour():
    key = raw_object_key("fares", dt.datetime(2026, 11, 28, 4, 5, 6, tzinfo=dt.timezone.utc), "u" * 36)
    assert key == f"{RAW_PREFIX}2026/11/28/04/fares-1-2026-11-28-04-05-06-{'u' * 36}"
    assert landing_hour_of_key(key) == "2026-11-28-04"
    assert landing_hour_of_key(f"s3a://lake/{RAW_PREFIX}2026/11/28/04/restored/{key.rsplit('/', 1)[1]}") == "2026-11-28-04"
    with pytest.raises(ValueError, match="is not a raw object under raw/fares/YYYY/MM/DD/HH/"):
        landing_hour_of_key(f"{RAW_PREFIX}2026/11/28/fares-1")


def test_a_sweep_against_the_market_records_every_call(tmp_path, market_url):
    path = write_watchlist(tmp_path, "trips:\n  - {origin: SFO, destination: JFK, nights: [3, 7], "
                                     "depart_days_ahead: {from: 1, to: 12, every: 3}}\n")
    trips = load_watchlist(path).trips_at(AT)
    stream = LocalDeliveryStream(tmp_path / "lake")
    stats = sweep(trips, QpxClient(market_url), stream, AT, concurrency=3)
    stream.flush()
    records = [json.loads(line) for key in stream.objects_written
               for line in (tmp_path / "lake" / key).read_text().splitlines()]
    assert stats.calls == len(trips) == len(records) == 8
    assert sum(stats.failures.values()) == 0
    assert {r["status"] for r in records} == {200}
    assert all(r["response"]["kind"] == "qpxExpress#tripsSearch" for r in records)
    assert {r["collected_at"] for r in records} == {"2026-10-01T12:00:00Z"}


def test_a_trip_is_collected_through_its_departure_day_at_its_origin(tmp_path, market_url):
    # 01:00 UTC on 2 October is the evening of 1 October in Los Angeles and the morning of 2 October in Tokyo.
    path = write_watchlist(tmp_path, """trips:
  - {origin: LAX, destination: JFK, nights: [3], depart_days_ahead: {from: 0, to: 1}}
  - {origin: NRT, destination: LAX, nights: [3], depart_days_ahead: {from: 0, to: 1}}
""")
    at = dt.datetime(2026, 10, 2, 1, tzinfo=dt.timezone.utc)
    trips = load_watchlist(path).trips_at(at)
    assert sorted((trip.origin, trip.depart_date.isoformat()) for trip in trips) == [
        ("LAX", "2026-10-01"), ("LAX", "2026-10-02"), ("NRT", "2026-10-02"), ("NRT", "2026-10-03")]
    stream = LocalDeliveryStream(tmp_path / "lake")
    stats = sweep(trips, QpxClient(market_url), stream, at, concurrency=2)
    stream.flush()
    records = [json.loads(line) for key in stream.objects_written
               for line in (tmp_path / "lake" / key).read_text().splitlines()]
    assert len(records) == 4 and sum(stats.failures.values()) == 0 and {r["status"] for r in records} == {200}
    [evening] = [r for r in records if r["query"]["origin"] == "LAX" and r["query"]["depart_date"] == "2026-10-01"]
    departures = [dt.datetime.fromisoformat(option["slice"][0]["segment"][0]["leg"][0]["departureTime"])
                  for option in evening["response"]["trips"]["tripOption"]]
    assert departures and min(departures) >= at + dt.timedelta(hours=1)


class CountingClient:
    """Answers every search after a pause, counting the calls per trip (the sweep's side is under test here)."""

    def __init__(self) -> None:
        self.calls: dict = {}
        self.first_call_at: dt.datetime | None = None

    def search(self, trip, at):
        self.first_call_at = self.first_call_at or dt.datetime.now(dt.timezone.utc)
        self.calls[trip] = self.calls.get(trip, 0) + 1
        time.sleep(0.15)
        return CallResult(200, 10, response={"kind": "qpxExpress#tripsSearch", "trips": {}})


def test_a_live_sweep_is_one_collection_across_providers_and_overlapping_entries(tmp_path):
    path = write_watchlist(tmp_path, """trips:
  - {origin: SFO, destination: JFK, nights: [3], depart_days_ahead: {from: 1, to: 9, every: 3}}
  - {origin: SFO, destination: JFK, nights: [3], depart_days_ahead: {from: 1, to: 9, every: 3}, provider: duffel}
  - {origin: SFO, destination: JFK, nights: [3, 7], depart_days_ahead: {from: 4, to: 9, every: 3}}
""")
    trips = load_watchlist(path).trips_at(dt.datetime.now(dt.timezone.utc))
    client, stream = CountingClient(), LocalDeliveryStream(tmp_path / "lake")
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    sweep(trips, client, stream, concurrency=1)
    stream.flush()
    records = [json.loads(line) for key in stream.objects_written
               for line in (tmp_path / "lake" / key).read_text().splitlines()]
    # The overlapping entries' shared trips are searched once; each provider's search is its own record.
    assert len(trips) == len(client.calls) == len(records) == 3 + 3 + 2 and set(client.calls.values()) == {1}
    assert len({record["search_id"] for record in records}) == len(records)
    assert {record["provider"] for record in records} == {"qpx", "duffel"}
    # One moment for the whole sweep (its start, to the second), though the calls came one after another over 1.2 s.
    [moment] = {record["collected_at"] for record in records}
    assert before <= dt.datetime.fromisoformat(moment.replace("Z", "+00:00")) <= client.first_call_at


class DuffelRefusingClient:
    """QPX answers; every Duffel call is refused (a revoked token)."""

    def search(self, trip, at):
        if trip.provider == "duffel":
            return CallResult(401, 5, error="HTTP 401: The access token used is not valid", failure="auth_error")
        return CallResult(200, 10, response={"kind": "qpxExpress#tripsSearch", "trips": {}})


def test_a_provider_that_never_answers_while_others_do_is_named(tmp_path):
    path = write_watchlist(tmp_path, """trips:
  - {origin: SFO, destination: JFK, nights: [3], depart_days_ahead: {from: 1, to: 9, every: 3}}
  - {origin: SFO, destination: JFK, nights: [3], depart_days_ahead: {from: 1, to: 9, every: 3}, provider: duffel}
""")
    trips = load_watchlist(path).trips_at(dt.datetime.now(dt.timezone.utc))
    stats = SweepStats()
    for _ in range(2):
        stats.add(sweep(trips, DuffelRefusingClient(), LocalDeliveryStream(tmp_path / "lake"), concurrency=2))
    assert stats.succeeded == 6 and stats.provider_calls == {"qpx": 6, "duffel": 6}
    assert stats.providers_without_success() == {"duffel": {"calls": 6, "failures_by_kind": {"auth_error": 6}}}
    alert = providers_without_success_alert("collect_fares", "0123456789abcdef", stats.providers_without_success())
    assert alert.subject == "[fares] collect_fares run 01234567: no answer from duffel"
    assert "- duffel: 6 calls (auth_error 6)" in alert.text.splitlines()
    # Replayed, Duffel is not called at all (a live provider answers for now only): no outage of its.
    replayed = sweep(trips, ProviderClients({"qpx": DuffelRefusingClient(), "duffel": DuffelClient("http://127.0.0.1:9",
                                                                                                  "duffel_test_x")}),
                     LocalDeliveryStream(tmp_path / "lake"), at=dt.datetime(2026, 10, 1, tzinfo=dt.timezone.utc))
    assert replayed.failures == {"unsupported_replay": 3} and replayed.providers_without_success() == {}


class FixedAnswerClient:
    """Answers every search with the same response (the sweep's side is under test here)."""

    def __init__(self, response: dict) -> None:
        self.response = response

    def search(self, trip, at):
        return CallResult(200, 10, response=self.response)


def test_an_answer_holding_half_a_surrogate_pair_is_delivered_as_the_provider_sent_it(tmp_path):
    # Valid JSON (json.loads takes it) but no UTF-8: the record keeps the escape instead of failing the sweep.
    answer = json.loads('{"kind": "qpxExpress#tripsSearch", "trips": {"data": {"city": [{"name": "Caf\\ud83d"}]}}}')
    trips = load_watchlist(write_watchlist(tmp_path, "trips:\n  - {origin: SFO, destination: JFK, nights: [3], "
                                                     "depart_days_ahead: {from: 1, to: 1}}\n")).trips_at(AT)
    stream = LocalDeliveryStream(tmp_path / "lake")
    sweep(trips, FixedAnswerClient(answer), stream, AT)
    stream.flush()
    [line] = [line for key in stream.objects_written for line in (tmp_path / "lake" / key).read_text().splitlines()]
    assert "Caf\\ud83d" in line and json.loads(line)["response"] == answer


def test_a_live_sweep_is_stamped_when_its_trips_were_chosen():
    # Trips chosen at 23:59:59 for their days ahead keep that moment, though the calls run after midnight.
    chosen = dt.datetime(2026, 10, 1, 23, 59, 59, tzinfo=dt.timezone.utc)
    stream = RecordingStream()
    trips = load_watchlist(PROJECT_ROOT / "fare_assets" / "watchlist.yaml").trips_at(chosen)[:1]
    sweep(trips, FixedAnswerClient({}), stream, chosen_at=chosen)
    assert [json.loads(record)["collected_at"] for record in stream.records] == ["2026-10-01T23:59:59Z"]


class RecordingStream:
    """Keeps what a sweep puts (delivery is not under test here)."""

    def __init__(self) -> None:
        self.records: list[bytes] = []

    def put_record_batch(self, records: list[bytes]) -> None:
        self.records.extend(records)


def test_failed_calls_become_records_with_their_error(tmp_path, market_url):
    path = write_watchlist(tmp_path, "trips:\n  - {origin: SFO, destination: JFK, nights: [3], "
                                     "depart_days_ahead: {from: 1, to: 6, every: 3}}\n")
    trips = load_watchlist(path).trips_at(AT)
    stream = LocalDeliveryStream(tmp_path / "lake")
    # A departure already in the past at market time: the market answers 400, which is not retried.
    stats = sweep(trips, QpxClient(market_url), stream, AT + dt.timedelta(days=30), concurrency=2)
    closed = sweep(trips, QpxClient("http://127.0.0.1:9", retries=1, backoff_seconds=0.01), stream, AT)
    stream.flush()
    records = [json.loads(line) for key in stream.objects_written
               for line in (tmp_path / "lake" / key).read_text().splitlines()]
    assert stats.failures["client_error"] == len(trips) and closed.failures["network"] == len(trips)
    assert len(records) == 2 * len(trips)
    assert all("error" in r and "response" not in r for r in records)
    assert {r["status"] for r in records} == {400, 0}


def test_a_local_object_lands_in_the_hour_its_oldest_record_arrived_as_at_firehose(tmp_path, monkeypatch):
    from fare_assets.streaming import delivery

    moments = [dt.datetime(2026, 12, 7, 10, 58, 30, tzinfo=dt.timezone.utc),
               dt.datetime(2026, 12, 7, 11, 3, 0, tzinfo=dt.timezone.utc)]

    class Clock(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return moments.pop(0) if moments else dt.datetime(2026, 12, 7, 11, 5, tzinfo=dt.timezone.utc)

    monkeypatch.setattr(delivery.dt, "datetime", Clock)
    stream = LocalDeliveryStream(tmp_path, buffer_seconds=3600)
    stream.put_record_batch([b'{"search_id":"first"}\n'])
    stream.put_record_batch([b'{"search_id":"second"}\n'])
    stream.flush()
    [key] = stream.objects_written
    assert key.startswith(f"{RAW_PREFIX}2026/12/07/10/fares-local-1-2026-12-07-10-58-30-")
