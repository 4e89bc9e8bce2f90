"""Fare providers the structuring job can read, by the envelope's `provider` name.

Each provider is a sibling module that alone knows its response format and exposes:
- `NAME`: the envelope's `provider` value;
- `PRICES_EACH_PASSENGER`: whether every pricing row carries its passengers' total (the totals check adds them up);
- `parse_responses(envelopes) -> DataFrame`: the envelopes with the response parsed by an explicit schema;
- `response_problem() -> Column`: on parsed envelopes, why one cannot be structured, or null;
- `build_tables(searches) -> dict[str, DataFrame]`: every table of `fare_assets.structuring.tables`,
  conformed, except `airports`, which carries only code, name, city_code and updated_at (the job
  adds the reference columns).

`offers` is not a provider: it holds what the offer-style formats (Duffel, Amadeus) share.
"""
from types import ModuleType

from fare_assets.structuring.providers import amadeus, duffel, qpx

PROVIDERS: dict[str, ModuleType] = {module.NAME: module for module in (qpx, duffel, amadeus)}
