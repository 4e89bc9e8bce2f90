"""Amadeus Flight Offers Search (`GET /v2/shopping/flight-offers`) responses → the curated tables.

One traveler pricing per traveler (not per passenger type); `price.total` is their sum. Times are
local wall times without a zone: the zone comes from `airportsdata`. The currency is whatever the
account is set to, so it is read from every price, never assumed.
"""
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, BooleanType, IntegerType, MapType, StringType

from fare_assets.structuring.envelope import search_rows, without_response
from fare_assets.structuring.providers.offers import (
    OTHER_TRIP_SHAPE,
    PARTITIONS,
    any_other_trip_shape,
    any_unpriced,
    cabin,
    duration_minutes,
    instant,
    named_codes,
    operating_disclosure,
    options_of,
    segment_and_leg_rows,
    struct_of,
    succeeded,
    wall_time,
    with_reference_time_zones,
)
from fare_assets.structuring.spark_compat import try_cast
from fare_assets.structuring.tables import MONEY, conform

NAME = "amadeus"
# Every Amadeus traveler pricing gives its total.
PRICES_EACH_PASSENGER = True
PARSED = "parsed_response"

_STRING, _INT = StringType(), IntegerType()
_ENDPOINT = struct_of(("iataCode", _STRING), ("terminal", _STRING), ("at", _STRING))

# Only the fields the tables need; anything else in the response is ignored, never inferred.
AMADEUS_RESPONSE_SCHEMA = struct_of(
    ("meta", struct_of(("count", _INT))),
    ("data", ArrayType(struct_of(
        ("type", _STRING),
        ("id", _STRING),
        ("lastTicketingDate", _STRING),
        ("numberOfBookableSeats", _INT),
        ("itineraries", ArrayType(struct_of(
            ("duration", _STRING),
            ("segments", ArrayType(struct_of(
                ("id", _STRING),
                ("departure", _ENDPOINT),
                ("arrival", _ENDPOINT),
                ("carrierCode", _STRING),
                ("number", _STRING),
                ("aircraft", struct_of(("code", _STRING))),
                ("operating", struct_of(("carrierCode", _STRING))),
                ("duration", _STRING),
                ("numberOfStops", _INT),
            ))),
        ))),
        ("price", struct_of(("currency", _STRING), ("total", _STRING), ("base", _STRING), ("grandTotal", _STRING))),
        ("validatingAirlineCodes", ArrayType(_STRING)),
        ("travelerPricings", ArrayType(struct_of(
            ("travelerId", _STRING),
            ("travelerType", _STRING),
            ("price", struct_of(
                ("currency", _STRING), ("total", _STRING), ("base", _STRING),
                ("taxes", ArrayType(struct_of(("amount", _STRING), ("code", _STRING)))),
            )),
            ("fareDetailsBySegment", ArrayType(struct_of(
                ("segmentId", _STRING),
                ("cabin", _STRING),
                ("fareBasis", _STRING),
                ("class", _STRING),
                ("includedCheckedBags", struct_of(("quantity", _INT), ("weight", _INT), ("weightUnit", _STRING))),
            ))),
        ))),
        ("fareRules", struct_of(("rules", ArrayType(struct_of(
            ("category", _STRING), ("maxPenaltyAmount", _STRING), ("notApplicable", BooleanType()),
        ))))),
    ))),
    ("dictionaries", struct_of(
        ("locations", MapType(_STRING, struct_of(("cityCode", _STRING), ("countryCode", _STRING)))),
        ("aircraft", MapType(_STRING, _STRING)),
        ("carriers", MapType(_STRING, _STRING)),
    )),
)


def _money(text: Column) -> Column:
    return try_cast(text, MONEY)


def _lookup(entries: Column, key_field: str, key: Column) -> Column:
    """The first struct in `entries` whose `key_field` equals `key` (null when none does)."""
    return F.try_element_at(F.filter(entries, lambda entry: entry[key_field] == key), F.lit(1))


def parse_responses(envelopes: DataFrame) -> DataFrame:
    """The envelopes with their Amadeus response parsed into `PARSED`."""
    return envelopes.withColumn(PARSED, F.from_json("response", AMADEUS_RESPONSE_SCHEMA))


def response_problem() -> Column:
    """Why an Amadeus record cannot be structured, or null (failed calls are kept as searches)."""
    return (
        F.when(succeeded() & F.col("response").isNull(),
               without_response("successful status without an Amadeus response"))
        .when(succeeded() & F.col(PARSED).data.isNull(),
              F.lit("successful status with a response that is not an Amadeus flight-offers answer (no data)"))
        .when(succeeded() & any_unpriced(F.col(PARSED).data, lambda offer: _money(offer.price.total),
                                         lambda offer: offer.price.currency),
              F.lit("successful status with an offer without a readable, positive price.total and price.currency"))
        .when(succeeded() & any_other_trip_shape(F.col(PARSED).data, lambda offer: offer.itineraries),
              F.lit(OTHER_TRIP_SHAPE))
    )


def _refundable(offer: Column) -> Column:
    """From the REFUND fare rule: "not applicable" means no refund; a penalty means refundable at a cost."""
    refund = _lookup(offer.fareRules.rules, "category", F.lit("REFUND"))
    return F.when(refund.isNotNull(), ~F.coalesce(refund.notApplicable, F.lit(False)))


def _option_rows(options: DataFrame) -> DataFrame:
    offer = F.col("option")
    price = offer.price
    return conform(
        options.select(
            "option_id", "search_id", "provider_option_id",
            _money(price.total).alias("total_amount"), price.currency.alias("currency"),
            _money(price.base).alias("base_amount"), price.currency.alias("base_currency"),
            # Amadeus gives the total and the base fare: the rest is taxes and fees.
            (_money(price.total) - _money(price.base)).alias("tax_amount"),
            _refundable(offer).alias("refundable"),
            # A ticketing date without a time or zone: its first instant in UTC never promises too much time.
            instant(wall_time(offer.lastTicketingDate), F.lit("UTC")).alias("latest_ticketing_at"),
            *PARTITIONS,
        ),
        "trip_options",
    )


def _flown(offer: Column) -> Column:
    """The offer's segments in flight order, each with its slice and segment number."""
    return F.flatten(F.transform(
        F.coalesce(offer.itineraries, F.array()),
        lambda itinerary, slice_pos: F.transform(
            itinerary.segments,
            lambda segment, segment_pos: F.struct(
                (slice_pos + 1).alias("slice_no"), (segment_pos + 1).alias("segment_no"), segment.alias("segment"),
            ),
        ),
    ))


def _pricings(options: DataFrame) -> DataFrame:
    """One pricing per traveler, keeping the offer's flown segments for fare lookups."""
    return options.select(
        "option_id", "collected_at", *PARTITIONS, "locations", _flown(F.col("option")).alias("flown"),
        F.posexplode(F.col("option").travelerPricings).alias("pricing_pos", "pricing"),
    ).withColumn("pricing_no", F.col("pricing_pos") + 1)


def _pricing_rows(pricings: DataFrame) -> DataFrame:
    price = F.col("pricing").price
    return conform(
        pricings.select(
            "option_id", "pricing_no",
            F.col("pricing").travelerType.alias("passenger_type"),
            F.lit(1).alias("passenger_count"),
            _money(price.total).alias("sale_total_per_pax"), price.currency.alias("sale_currency"),
            _money(price.base).alias("sale_fare_per_pax"),
            _money(price.base).alias("base_per_pax"), price.currency.alias("base_currency"),
            (_money(price.total) - _money(price.base)).alias("tax_per_pax"),
            F.lit(None).cast("string").alias("fare_calculation"),
            *PARTITIONS,
        ),
        "pricings",
    )


def _segment_fares(pricings: DataFrame) -> DataFrame:
    """One row per (traveler, fare detail), matched to its segment by id: details need not follow flight order."""
    detail = F.col("detail")
    flown = F.try_element_at(F.filter(F.col("flown"), lambda entry: entry.segment.id == detail.segmentId), F.lit(1))
    return pricings.select(
        "option_id", "pricing_no", *PARTITIONS, "locations", "flown",
        F.posexplode(F.col("pricing").fareDetailsBySegment).alias("fare_pos", "detail"),
    ).select(
        "option_id", "pricing_no", *PARTITIONS, "locations", "detail",
        (F.col("fare_pos") + 1).alias("fare_no"), flown.alias("flown_segment"),
    )


def _city(locations: Column, airport: Column) -> Column:
    return F.coalesce(F.try_element_at(locations, airport).cityCode, airport)


def _fare_rows(segment_fares: DataFrame) -> DataFrame:
    detail, segment, locations = F.col("detail"), F.col("flown_segment").segment, F.col("locations")
    return conform(
        segment_fares.select(
            "option_id", "pricing_no", "fare_no",
            detail.segmentId.alias("provider_fare_id"),
            # The segment's fare is the marketing carrier's; the validating carrier only issues the ticket.
            segment.carrierCode.alias("carrier"),
            _city(locations, segment.departure.iataCode).alias("origin_city"),
            _city(locations, segment.arrival.iataCode).alias("destination_city"),
            detail.fareBasis.alias("basis_code"),
            *PARTITIONS,
        ),
        "fares",
    )


def _segment_fare_rows(segment_fares: DataFrame) -> DataFrame:
    bags = F.col("detail").includedCheckedBags
    # A fare detail naming a segment the offer does not list keeps its fare row but prices no segment.
    return conform(
        segment_fares.where(F.col("flown_segment").isNotNull()).select(
            "option_id", "pricing_no",
            F.col("flown_segment").slice_no.alias("slice_no"), F.col("flown_segment").segment_no.alias("segment_no"),
            "fare_no",
            bags.quantity.alias("free_bag_pieces"),
            F.when(F.upper(bags.weightUnit) == "KG", bags.weight).alias("free_bag_kilos"),
            *PARTITIONS,
        ),
        "segment_fares",
    )


def _tax_rows(pricings: DataFrame) -> DataFrame:
    tax = F.col("tax")
    currency = F.col("pricing").price.currency
    return conform(
        pricings.select(
            "option_id", "pricing_no", *PARTITIONS, currency.alias("currency"),
            # The same code can appear twice in one pricing: tax_no keeps both.
            F.posexplode(F.col("pricing").price.taxes).alias("tax_pos", "tax"),
        ).select(
            "option_id", "pricing_no", (F.col("tax_pos") + 1).alias("tax_no"),
            tax.code.alias("tax_id"), tax.code.alias("tax_code"), F.lit(None).cast("string").alias("charge_type"),
            _money(tax.amount).alias("amount"), "currency", F.lit(None).cast("string").alias("country"),
            *PARTITIONS,
        ),
        "taxes",
    )


def _slices(options: DataFrame) -> DataFrame:
    # An offer without itineraries is still a priced option: it simply has no slice rows.
    return options.select(
        "option_id", *PARTITIONS, "carrier_names", F.col("option").alias("offer"),
        F.posexplode(F.col("option").itineraries).alias("slice_pos", "slice"),
    ).withColumn("slice_no", F.col("slice_pos") + 1)


def _slice_rows(slices: DataFrame) -> DataFrame:
    segments = F.col("slice").segments
    # A stop is every landing between origin and destination: connections and technical stops.
    technical_stops = F.aggregate(
        segments, F.lit(0), lambda count, segment: count + F.coalesce(segment.numberOfStops, F.lit(0))
    )
    return conform(
        slices.select(
            "option_id", "slice_no",
            F.try_element_at(segments, F.lit(1)).departure.iataCode.alias("origin"),
            F.try_element_at(segments, F.lit(-1)).arrival.iataCode.alias("destination"),
            duration_minutes(F.col("slice").duration).alias("duration_min"),
            (F.size(segments) - 1 + technical_stops).alias("stops"),
            *PARTITIONS,
        ),
        "slices",
    )


def _flat_segments(slices: DataFrame) -> DataFrame:
    segment = F.col("segment")
    offer = F.col("offer")
    first_traveler = F.try_element_at(offer.travelerPricings, F.lit(1))
    detail = _lookup(first_traveler.fareDetailsBySegment, "segmentId", segment.id)
    operating = segment.operating.carrierCode
    return slices.select(
        "option_id", "slice_no", *PARTITIONS, "carrier_names", "offer",
        F.posexplode(F.col("slice").segments).alias("segment_pos", "segment"),
    ).select(
        "option_id", "slice_no", (F.col("segment_pos") + 1).alias("segment_no"), *PARTITIONS,
        segment.id.alias("provider_segment_id"),
        segment.carrierCode.alias("carrier"), segment.number.alias("flight_number"),
        cabin(detail.cabin).alias("cabin"), detail["class"].alias("booking_code"),
        # Amadeus counts bookable seats per offer: it bounds every segment's seats.
        offer.numberOfBookableSeats.alias("seats_left"),
        duration_minutes(segment.duration).alias("duration_min"),
        segment.departure.iataCode.alias("origin"), segment.arrival.iataCode.alias("destination"),
        wall_time(segment.departure.at).alias("departs_local"), wall_time(segment.arrival.at).alias("arrives_local"),
        segment.aircraft.code.alias("aircraft"),
        F.lit(None).cast("int").alias("mileage"),
        # No `operating` object means the marketing carrier flies the segment.
        operating_disclosure(segment.carrierCode, operating, F.try_element_at(F.col("carrier_names"), operating))
        .alias("operating_disclosure"),
    )


def _dictionary_rows(searches: DataFrame, field: str, table: str) -> DataFrame:
    """Code → name pairs from the response's `dictionaries`, stamped with when they were seen."""
    return named_codes(
        searches.select(F.explode(F.col(PARSED).dictionaries[field]).alias("code", "name"),
                        F.col("collected_at").alias("updated_at")),
        table,
    )


def _airport_rows(searches: DataFrame) -> DataFrame:
    """Airports as Amadeus lists them (code and city only); the job adds names, country and time zone."""
    return searches.select(
        F.explode(F.col(PARSED).dictionaries.locations).alias("code", "location"),
        F.col("collected_at").alias("updated_at"),
    ).select(
        "code", F.lit(None).cast("string").alias("name"), F.col("location").cityCode.alias("city_code"), "updated_at",
    )


def _tax_code_rows(pricings: DataFrame) -> DataFrame:
    codes = pricings.select(
        F.explode(F.col("pricing").price.taxes.code).alias("code"), F.lit(None).cast("string").alias("name"),
        F.col("collected_at").alias("updated_at"),
    )
    return named_codes(codes, "tax_codes")


def build_tables(searches: DataFrame) -> dict[str, DataFrame]:
    """Every curated table from parsed Amadeus envelopes (sound, deduplicated, one per search)."""
    parsed = F.col(PARSED)
    option_count = F.when(succeeded(), F.coalesce(F.size(parsed.data), F.lit(0)))
    options = options_of(
        searches, parsed.data, "id", F.col("collected_at"),
        parsed.dictionaries.locations.alias("locations"), parsed.dictionaries.carriers.alias("carrier_names"),
    )
    pricings = _pricings(options)
    segment_fares = _segment_fares(pricings)
    slices = _slices(options)
    segments, legs = segment_and_leg_rows(with_reference_time_zones(_flat_segments(slices)))
    return {
        # Amadeus answers carry no request id.
        "searches": search_rows(searches, F.lit(None).cast("string"), F.coalesce(option_count, F.lit(0))),
        "trip_options": _option_rows(options),
        "pricings": _pricing_rows(pricings),
        "fares": _fare_rows(segment_fares),
        "segment_fares": _segment_fare_rows(segment_fares),
        "taxes": _tax_rows(pricings),
        "slices": _slice_rows(slices),
        "segments": segments,
        "legs": legs,
        "airports": _airport_rows(searches),
        "cities": named_codes(
            _airport_rows(searches).select(F.col("city_code").alias("code"), "name", "updated_at"), "cities"
        ),
        "carriers": _dictionary_rows(searches, "carriers", "carriers"),
        "aircraft": _dictionary_rows(searches, "aircraft", "aircraft"),
        "tax_codes": _tax_code_rows(pricings),
    }
