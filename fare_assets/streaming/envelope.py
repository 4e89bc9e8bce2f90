"""The raw record envelope of DESIGN.md: one JSON object per line, the provider's answer untouched."""
import datetime as dt
import json
import uuid

ENVELOPE_VERSION = 1
# search_ids are derived from what was asked and when, so a rerun sweep repeats its ids and the
# duplicates that at-least-once delivery creates can be dropped downstream.
_SEARCH_NAMESPACE = uuid.UUID("5f1c1f8e-2d0a-4c55-9a77-2f6f3c1f0a11")


def utc_iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def search_id(provider: str, query: dict, collected_at: dt.datetime) -> str:
    """A stable id for one search: same provider, query and collection time give the same id."""
    key = json.dumps([provider, query, utc_iso(collected_at)], sort_keys=True)
    return str(uuid.uuid5(_SEARCH_NAMESPACE, key))


def envelope(provider: str, query: dict, collected_at: dt.datetime, status: int, elapsed_ms: int,
             response: dict | None = None, error: str | None = None, body: str | None = None) -> dict:
    """Wrap one provider call; a failed call carries `error` (and the unparsable `body`) instead of `response`."""
    record = {
        "v": ENVELOPE_VERSION,
        "search_id": search_id(provider, query, collected_at),
        "provider": provider,
        "collected_at": utc_iso(collected_at),
        "query": query,
        "status": status,
        "elapsed_ms": elapsed_ms,
    }
    if response is not None:
        record["response"] = response
    if error is not None:
        record["error"] = error
    if body is not None:
        record["body"] = body
    return record


def encode(record: dict) -> bytes:
    """One JSON line; Firehose concatenates records, so each ends with a newline."""
    try:
        return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
    except UnicodeEncodeError:
        # An answer holding half a surrogate pair ("\ud83d", a string cut at a UTF-16 boundary) is valid JSON but
        # no UTF-8: written escaped, as the provider sent it, rather than failing the sweep.
        return json.dumps(record, separators=(",", ":")).encode() + b"\n"
