"""/openapi.json: the JSON API described as OpenAPI 3.0, so clients and schemathesis can rely on it."""
from flask import Blueprint, jsonify

from webapp.validation import CABIN_LABELS

openapi = Blueprint("openapi", __name__)

_PLACE = {"type": "string", "minLength": 1, "maxLength": 60}
_CABIN_NAMES = [*CABIN_LABELS, *(label.lower() for label in CABIN_LABELS.values())]
_DATE = {"type": "string", "format": "date"}
_TRIP_PARAMETERS = [
    {"name": "origin", "in": "query", "required": True, "schema": _PLACE,
     "description": "IATA airport code (SFO) or a city with one airport"},
    {"name": "destination", "in": "query", "required": True, "schema": _PLACE,
     "description": "IATA airport code (JFK) or a city with one airport"},
    {"name": "depart", "in": "query", "required": True, "schema": _DATE,
     "description": "departure date, today or later at the origin (in its time zone)"},
    {"name": "return", "in": "query", "required": True, "schema": _DATE, "description": "return date, on or after departure"},
    {"name": "adults", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": 9},
     "description": "only searches for this many adults (default: the trip's latest search)"},
    {"name": "children", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 0, "maximum": 8}},
    {"name": "cabin", "in": "query", "required": False, "schema": {"type": "string", "enum": _CABIN_NAMES},
     "description": "only searches in this cabin (default: the trip's latest search), by its code or its name, "
                    "in any case"},
]
_AMOUNT = {"type": "string", "description": "decimal amount as text, e.g. 249.99", "example": "249.99"}
_NULLABLE_AMOUNT = {**_AMOUNT, "nullable": True}
_ERROR = {"type": "object", "required": ["error"], "properties": {
    "error": {"type": "string"},
    "fields": {"type": "object", "additionalProperties": {"type": "string"},
               "description": "what to fix, per request field"}}}
_TRIP = {"type": "object", "properties": {
    "origin": {"type": "string"}, "origin_name": {"type": "string", "nullable": True},
    "destination": {"type": "string"}, "destination_name": {"type": "string", "nullable": True},
    "depart": _DATE, "return": _DATE,
    "adults": {"type": "integer", "nullable": True}, "children": {"type": "integer", "nullable": True},
    "cabin": {"type": "string", "nullable": True}}}
_LEG = {"type": "object", "properties": {
    "departs_local": {"type": "string", "nullable": True}, "arrives_local": {"type": "string", "nullable": True},
    "stops": {"type": "integer", "nullable": True}, "duration_min": {"type": "integer", "nullable": True}}}
_OPTION = {"type": "object", "properties": {
    "option_id": {"type": "string"}, "market": {"type": "string", "enum": ["national", "international"]},
    "provider": {"type": "string"}, "total": _AMOUNT, "currency": {"type": "string"},
    "carriers": {"type": "array", "items": {"type": "string"}}, "cabin": {"type": "string"},
    "adults": {"type": "integer"}, "children": {"type": "integer"}, "outbound": _LEG, "return": _LEG}}
_CHEAPEST_TRIP = {"type": "object", "properties": {
    "depart": _DATE, "return": _DATE, "adults": {"type": "integer"}, "children": {"type": "integer"},
    "cabin": {"type": "string"}, "total": _AMOUNT, "currency": {"type": "string"}, "url": {"type": "string"},
    "collected_at": {"type": "string", "format": "date-time"}}}
_PROVIDER_QUOTE = {"type": "object", "properties": {
    "provider": {"type": "string"}, "collected_at": {"type": "string", "format": "date-time"}, "cheapest": _AMOUNT,
    "currency": {"type": "string"}}}
_SAVED_ALERT = {"type": "object", "properties": {
    "id": {"type": "integer"}, "trip": _TRIP, "threshold": _AMOUNT,
    "currency": {"type": "string", "nullable": True,
                 "description": "null when the alert names none and the trip was never quoted: it takes the currency "
                                "of the trip's first quote"},
    "collected": {"type": "boolean", "description": "whether fares of the trip (party and cabin) were collected: if "
                                                    "not, the alert can only be met once the watchlist collects it"}}}
_INSIGHT = {"type": "object", "nullable": True, "properties": {
    "level": {"type": "string", "enum": ["low", "typical", "high", "unknown", "incomplete", "stale", "departed"],
              "description": "incomplete: a provider missing from the newest collection may have quoted it cheaper, "
                             "so it is not judged; stale: the newest collection is more than a day old; departed: every "
                             "option of the newest collection has left (the departure day)"},
    "percentile": {"type": "integer", "nullable": True},
    "typical_low": {"type": "number", "nullable": True}, "typical_high": {"type": "number", "nullable": True},
    "text": {"type": "string"}}}
_ADVICE = {"type": "object", "required": ["action", "reason"], "properties": {
    "action": {"type": "string", "enum": ["buy", "wait", "not_enough_data", "unavailable", "no_fares", "stale"],
               "description": "stale: the newest fares are more than a day old, so no advice is given; "
                              "unavailable: no advice computed for the trip yet, or the last (based_on_collection) "
                              "was given on fares more than a day older than the newest"},
    "drop_probability": {"type": "number", "nullable": True}, "confidence": {
        "type": "number", "nullable": True,
        "description": "Calibrated chance the advice pays off: for wait, that the fare drops by 2% or more before "
                       "departure; for buy, that it does not."},
    "expected_saving": {"type": "number", "nullable": True}, "currency": {"type": "string", "nullable": True},
    "reason": {"type": "string"},
    "based_on_collection": {"type": "string", "format": "date-time", "nullable": True,
                            "description": "the collection the advice was computed for"},
    "up_to_date": {"type": "boolean", "nullable": True,
                   "description": "false when a newer collection of the trip has not been advised on: not yet, or "
                                  "never when a provider is missing from it (absent_providers); or the advice is "
                                  "stale"},
    "model_version": {"type": "string", "nullable": True, "description": "the advisor version that advised"}}}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _trip_operation(summary: str, body: dict) -> dict:
    return {"get": {"summary": summary, "parameters": _TRIP_PARAMETERS, "responses": {
        "200": _json({"type": "object", "properties": body}, "the answer (empty lists for an unknown trip)"),
        "400": _json(_ERROR, "an invalid trip: `fields` says what to fix"),
        "503": _json(_ERROR, "the fare database is unreachable")}}}


DOCUMENT = {
    "openapi": "3.0.3",
    "info": {"title": "Fare platform API", "version": "1.0.0",
             "description": "Round-trip fares collected from fare providers, with price insight and buy/wait advice."},
    "paths": {
        "/api/fares": _trip_operation("The trip's latest collection, cheapest first", {
            "trip": _TRIP, "collected_at": {"type": "string", "format": "date-time", "nullable": True,
                                            "description": "the newest collection, null if the trip was never "
                                                           "collected"},
            "nothing_on_sale": {"type": "boolean",
                                "description": "every provider that answered the newest collection had nothing to "
                                               "sell: options is empty, and fares quoted before it are not shown"},
            "options_in_collection": {"type": "integer"}, "options": {"type": "array", "items": _OPTION},
            "absent_providers": {"type": "array", "items": _PROVIDER_QUOTE,
                                 "description": "providers that quoted the trip in the day before the collection, "
                                                "have not since answered without options, and did not answer in "
                                                "it (in any currency), each with its last quote, in the "
                                                "collection's currency where it has one"},
            "other_currency_quotes": {"type": "array", "items": _PROVIDER_QUOTE,
                                      "description": "providers that quoted the trip at the collection's moment in "
                                                     "another currency (not ranked with the options)"},
            "other_trips": {"type": "array", "items": _CHEAPEST_TRIP}}),
        "/api/history": _trip_operation("The cheapest fare of each collection of the trip no provider was missing from, "
                                        "oldest first", {
            "trip": _TRIP, "adults": {"type": "integer", "nullable": True},
            "children": {"type": "integer", "nullable": True}, "cabin": {"type": "string", "nullable": True},
            "points": {"type": "array", "items": {"type": "object", "properties": {
                "collected_at": {"type": "string", "format": "date-time"}, "cheapest": _AMOUNT,
                "currency": {"type": "string"}}},
                "description": "collections no provider was missing from (their cheapest is the market's)"},
            "collections_missing_a_provider": {
                "type": "integer",
                "description": "collections left out of points: a provider that quoted the trip in the day before "
                               "(and has not since answered without options) did not answer in them (in any "
                               "currency; its call failed or its answer could not be read)"}}),
        "/api/date-grid": _trip_operation("Cheapest fare per departure/return pair within 3 days", {
            "trip": _TRIP, "fare_model_available": {"type": "boolean"},
            "cells": {"type": "array", "items": {"type": "object", "properties": {
                "depart": _DATE, "return": _DATE,
                "source": {"type": "string", "enum": ["collected", "nothing_on_sale", "predicted", "unknown"],
                           "description": "nothing_on_sale: the pair's newest collection found no fare on sale"},
                "total": _NULLABLE_AMOUNT, "currency": {"type": "string", "nullable": True},
                "collected_at": {"type": "string", "format": "date-time", "nullable": True},
                "predicted_for": {"type": "string", "format": "date-time",
                                  "description": "predicted cells: the quote time the fare model predicted for"}}}}}),
        "/api/advice": _trip_operation("Buy now or wait (confidence, expected saving) and the price insight",
                                       {"trip": _TRIP, "advice": _ADVICE, "insight": _INSIGHT}),
        "/api/routes": {"get": {"summary": "National and international routes with their freshest fare and data age",
                                "responses": {"200": _json({"type": "object", "properties": {
                                    "generated_at": {"type": "string", "format": "date-time"},
                                    "national": {"type": "array", "items": {"type": "object"}},
                                    "international": {"type": "array", "items": {"type": "object"}}}}, "routes"),
                                    "503": _json(_ERROR, "the fare database is unreachable")}}},
        "/api/airports": {"get": {"summary": "Airports matching a code prefix, a city or a name",
                                  "parameters": [{"name": "q", "in": "query", "required": False,
                                                  "schema": {"type": "string", "maxLength": 60}}],
                                  "responses": {"200": _json({"type": "object", "properties": {
                                      "airports": {"type": "array", "items": {"type": "object", "properties": {
                                          "code": {"type": "string"}, "name": {"type": "string"},
                                          "city": {"type": "string"}, "country": {"type": "string"}}}}}},
                                      "matching airports, at most 10")}}},
        "/api/alerts": {"post": {
            "summary": "Watch a trip: a notification is sent when its cheapest fare falls below the threshold",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["origin", "destination", "depart", "return", "threshold"],
                "properties": {"origin": _PLACE, "destination": _PLACE, "depart": _DATE, "return": _DATE,
                               "adults": {"type": "integer", "minimum": 1, "maximum": 9,
                                          "description": "default (with children and cabin): the party and cabin "
                                                         "of the trip's newest fares, as its page shows"},
                               "children": {"type": "integer", "minimum": 0, "maximum": 8},
                               "cabin": {"type": "string", "enum": _CABIN_NAMES},
                               "threshold": {"type": "string", "example": "350"},
                               "currency": {"type": "string", "example": "USD",
                                            "description": "default: the currency of the trip's newest fares (USD "
                                                           "for a trip not collected yet); one the trip's fares were "
                                                           "never quoted in is refused"}}}}}},
            "responses": {"201": _json(_SAVED_ALERT, "the alert was saved"),
                "200": _json(_SAVED_ALERT, "the same alert was already saved and is still open: its id"),
                "400": _json(_ERROR, "an invalid alert: `fields` says what to fix"),
                "503": _json(_ERROR, "the fare database is unreachable")}}},
        "/healthz": {"get": {"summary": "Whether the app reaches its database", "responses": {
            "200": _json({"type": "object", "properties": {"status": {"type": "string"},
                                                           "database": {"type": "string"}}}, "reachable"),
            "503": _json({"type": "object"}, "the database is unreachable")}}},
    },
}


@openapi.get("/openapi.json")
def document():
    """The OpenAPI document of the JSON API."""
    return jsonify(DOCUMENT)
