"""Duffel `POST /air/offer_requests` responses → the curated tables (Spark SQL functions only).

Duffel prices an offer as a whole: per-passenger amounts exist only when the offer has one passenger.
Times are local wall times; each airport object carries its IANA time zone.
"""
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, BooleanType, IntegerType, StringType

from fare_assets.structuring.envelope import search_rows, without_response
from fare_assets.structuring.providers.offers import (
    OTHER_TRIP_SHAPE,
    PARTITIONS,
    any_other_trip_shape,
    any_unpriced,
    cabin,
    duration_minutes,
    empty_table,
    miles,
    named_codes,
    operating_disclosure,
    options_of,
    segment_and_leg_rows,
    struct_of,
    succeeded,
    wall_time,
)
from fare_assets.structuring.spark_compat import try_cast
from fare_assets.structuring.tables import MONEY, conform

NAME = "duffel"
# Duffel prices an offer of several passengers only as a whole: its pricings then have no totals.
PRICES_EACH_PASSENGER = False
PARSED = "parsed_response"

_STRING, _INT = StringType(), IntegerType()
_CODE_NAME = struct_of(("iata_code", _STRING), ("name", _STRING))
_PLACE = struct_of(
    ("type", _STRING), ("iata_code", _STRING), ("name", _STRING), ("iata_city_code", _STRING),
    ("city_name", _STRING), ("time_zone", _STRING), ("city", _CODE_NAME),
)

# Only the fields the tables need; anything else in the response is ignored, never inferred.
DUFFEL_RESPONSE_SCHEMA = struct_of(
    ("data", struct_of(
        ("id", _STRING),
        ("live_mode", BooleanType()),
        ("offers", ArrayType(struct_of(
            ("id", _STRING),
            ("total_amount", _STRING), ("total_currency", _STRING),
            ("base_amount", _STRING), ("base_currency", _STRING),
            ("tax_amount", _STRING), ("tax_currency", _STRING),
            ("expires_at", _STRING),
            ("owner", _CODE_NAME),
            ("conditions", struct_of(("refund_before_departure", struct_of(("allowed", BooleanType()))))),
            ("passengers", ArrayType(struct_of(("id", _STRING), ("type", _STRING), ("age", _INT)))),
            ("slices", ArrayType(struct_of(
                ("id", _STRING),
                ("duration", _STRING),
                ("segments", ArrayType(struct_of(
                    ("id", _STRING),
                    ("duration", _STRING),
                    ("distance", _STRING),
                    ("departing_at", _STRING),
                    ("arriving_at", _STRING),
                    ("origin", _PLACE),
                    ("destination", _PLACE),
                    ("marketing_carrier", _CODE_NAME),
                    ("marketing_carrier_flight_number", _STRING),
                    ("operating_carrier", _CODE_NAME),
                    ("operating_carrier_flight_number", _STRING),
                    ("aircraft", _CODE_NAME),
                    ("stops", ArrayType(struct_of(("id", _STRING)))),
                    ("passengers", ArrayType(struct_of(
                        ("passenger_id", _STRING),
                        ("fare_basis_code", _STRING),
                        ("cabin_class", _STRING),
                        ("baggages", ArrayType(struct_of(("type", _STRING), ("quantity", _INT)))),
                    ))),
                ))),
            ))),
        ))),
    )),
)


def _money(text: Column) -> Column:
    return try_cast(text, MONEY)


def parse_responses(envelopes: DataFrame) -> DataFrame:
    """The envelopes with their Duffel response parsed into `PARSED`."""
    return envelopes.withColumn(PARSED, F.from_json("response", DUFFEL_RESPONSE_SCHEMA))


def response_problem() -> Column:
    """Why a Duffel record cannot be structured, or null (failed calls are kept as searches)."""
    return (
        F.when(succeeded() & F.col("response").isNull(),
               without_response("successful status without a Duffel response"))
        .when(succeeded() & F.col(PARSED).data.offers.isNull(),
              F.lit("successful status with a response that is not a Duffel offer request (no data.offers)"))
        .when(succeeded() & any_unpriced(F.col(PARSED).data.offers, lambda offer: _money(offer.total_amount),
                                         lambda offer: offer.total_currency),
              F.lit("successful status with an offer without a readable, positive total_amount and total_currency"))
        .when(succeeded() & any_other_trip_shape(F.col(PARSED).data.offers, lambda offer: offer.slices),
              F.lit(OTHER_TRIP_SHAPE))
    )


def _tax_in_sale_currency(offer: Column) -> Column:
    """The offer's tax amount when it is in the offer's currency, as the tables' tax columns are; else null."""
    # Duffel gives the tax its own currency, which it documents may differ from the total's.
    same_currency = F.coalesce(offer.tax_currency, offer.total_currency) == offer.total_currency
    return F.when(same_currency, _money(offer.tax_amount))


def _option_rows(options: DataFrame) -> DataFrame:
    offer = F.col("option")
    return conform(
        options.select(
            "option_id", "search_id", "provider_option_id",
            _money(offer.total_amount).alias("total_amount"), offer.total_currency.alias("currency"),
            _money(offer.base_amount).alias("base_amount"), offer.base_currency.alias("base_currency"),
            _tax_in_sale_currency(offer).alias("tax_amount"),
            offer.conditions.refund_before_departure.allowed.alias("refundable"),
            # An offer can be booked until it expires: the nearest thing to a ticketing deadline.
            F.try_to_timestamp(offer.expires_at).alias("latest_ticketing_at"),
            *PARTITIONS,
        ),
        "trip_options",
    )


def _pricings(options: DataFrame) -> DataFrame:
    """One pricing per passenger, with the offer's flown segments in order (for fares and baggage)."""
    offer = F.col("option")
    flown = F.flatten(F.transform(
        F.coalesce(offer.slices, F.array()),
        lambda slice_, slice_pos: F.transform(
            slice_.segments,
            lambda segment, segment_pos: F.struct(
                (slice_pos + 1).alias("slice_no"), (segment_pos + 1).alias("segment_no"), segment.alias("segment"),
            ),
        ),
    ))
    return options.select(
        "option_id", *PARTITIONS, offer.alias("offer"), flown.alias("flown"),
        F.posexplode(offer.passengers).alias("pricing_pos", "passenger"),
    ).withColumn("pricing_no", F.col("pricing_pos") + 1)


def _pricing_rows(pricings: DataFrame) -> DataFrame:
    offer, passenger = F.col("offer"), F.col("passenger")
    alone = F.size(offer.passengers) == 1
    same_currency = offer.base_currency == offer.total_currency
    return conform(
        pricings.select(
            "option_id", "pricing_no",
            # Duffel v2 names adults by type and children by age alone.
            F.coalesce(passenger.type, F.concat(F.lit("age "), passenger.age)).alias("passenger_type"),
            F.lit(1).alias("passenger_count"),
            F.when(alone, _money(offer.total_amount)).alias("sale_total_per_pax"),
            offer.total_currency.alias("sale_currency"),
            F.when(alone & same_currency, _money(offer.base_amount)).alias("sale_fare_per_pax"),
            F.when(alone, _money(offer.base_amount)).alias("base_per_pax"),
            offer.base_currency.alias("base_currency"),
            F.when(alone, _tax_in_sale_currency(offer)).alias("tax_per_pax"),
            F.lit(None).cast("string").alias("fare_calculation"),
            *PARTITIONS,
        ),
        "pricings",
    )


def _passenger_fares(pricings: DataFrame) -> DataFrame:
    """One row per (passenger, flown segment): Duffel gives each passenger a fare basis per segment."""
    segment = F.col("flown_segment").segment
    passenger_id = F.col("passenger").id
    return pricings.select(
        "option_id", "pricing_no", *PARTITIONS, "passenger",
        F.posexplode("flown").alias("fare_pos", "flown_segment"),
    ).select(
        "option_id", "pricing_no", *PARTITIONS,
        (F.col("fare_pos") + 1).alias("fare_no"),
        F.col("flown_segment").slice_no.alias("slice_no"), F.col("flown_segment").segment_no.alias("segment_no"),
        segment.alias("segment"),
        F.try_element_at(F.filter(segment.passengers, lambda pax: pax.passenger_id == passenger_id), F.lit(1))
        .alias("fare"),
    )


def _fare_city(place: Column) -> Column:
    """The city fares to or from a place are priced to: its metropolitan code (NYC), else its own code."""
    return F.coalesce(place.iata_city_code, place.iata_code)


def _fare_rows(passenger_fares: DataFrame) -> DataFrame:
    segment = F.col("segment")
    return conform(
        passenger_fares.select(
            "option_id", "pricing_no", "fare_no",
            F.lit(None).cast("string").alias("provider_fare_id"),
            # A segment's fare basis is filed by the airline selling the seat: the marketing carrier.
            segment.marketing_carrier.iata_code.alias("carrier"),
            _fare_city(segment.origin).alias("origin_city"), _fare_city(segment.destination).alias("destination_city"),
            F.col("fare").fare_basis_code.alias("basis_code"),
            *PARTITIONS,
        ),
        "fares",
    )


def _segment_fare_rows(passenger_fares: DataFrame) -> DataFrame:
    checked = F.filter(F.col("fare").baggages, lambda bag: bag.type == "checked")
    return conform(
        passenger_fares.select(
            "option_id", "pricing_no", "slice_no", "segment_no", "fare_no",
            F.aggregate(checked, F.lit(0), lambda total, bag: total + F.coalesce(bag.quantity, F.lit(0)))
            .alias("free_bag_pieces"),
            F.lit(None).cast("int").alias("free_bag_kilos"),
            *PARTITIONS,
        ),
        "segment_fares",
    )


def _slices(options: DataFrame) -> DataFrame:
    # An offer without slices is still a priced option: it simply has no slice rows.
    return options.select(
        "option_id", *PARTITIONS, F.posexplode(F.col("option").slices).alias("slice_pos", "slice")
    ).withColumn("slice_no", F.col("slice_pos") + 1)


def _slice_rows(slices: DataFrame) -> DataFrame:
    segments = F.col("slice").segments
    # A stop is every landing between origin and destination: connections and technical stops.
    technical_stops = F.aggregate(
        segments, F.lit(0), lambda count, segment: count + F.coalesce(F.size(segment.stops), F.lit(0))
    )
    return conform(
        slices.select(
            "option_id", "slice_no",
            F.try_element_at(segments, F.lit(1)).origin.iata_code.alias("origin"),
            F.try_element_at(segments, F.lit(-1)).destination.iata_code.alias("destination"),
            duration_minutes(F.col("slice").duration).alias("duration_min"),
            (F.size(segments) - 1 + technical_stops).alias("stops"),
            *PARTITIONS,
        ),
        "slices",
    )


def _flat_segments(slices: DataFrame) -> DataFrame:
    segment = F.col("segment")
    first_passenger = F.try_element_at(segment.passengers, F.lit(1))
    return slices.select(
        "option_id", "slice_no", *PARTITIONS, F.posexplode(F.col("slice").segments).alias("segment_pos", "segment"),
    ).select(
        "option_id", "slice_no", (F.col("segment_pos") + 1).alias("segment_no"), *PARTITIONS,
        segment.id.alias("provider_segment_id"),
        segment.marketing_carrier.iata_code.alias("carrier"),
        segment.marketing_carrier_flight_number.alias("flight_number"),
        cabin(first_passenger.cabin_class).alias("cabin"),
        F.lit(None).cast("string").alias("booking_code"),
        F.lit(None).cast("int").alias("seats_left"),
        duration_minutes(segment.duration).alias("duration_min"),
        segment.origin.iata_code.alias("origin"), segment.destination.iata_code.alias("destination"),
        wall_time(segment.departing_at).alias("departs_local"), wall_time(segment.arriving_at).alias("arrives_local"),
        segment.origin.time_zone.alias("origin_tz"), segment.destination.time_zone.alias("destination_tz"),
        segment.aircraft.iata_code.alias("aircraft"),
        miles(segment.distance).alias("mileage"),
        # The operating flight number is often null on codeshares; the operating airline is not.
        operating_disclosure(segment.marketing_carrier.iata_code, segment.operating_carrier.iata_code,
                             segment.operating_carrier["name"]).alias("operating_disclosure"),
    )


def _segment_places(options: DataFrame) -> DataFrame:
    segments = F.flatten(F.transform(F.coalesce(F.col("option").slices, F.array()), lambda slice_: slice_.segments))
    return options.select("collected_at", F.explode(segments).alias("segment"))


def _dimension_tables(options: DataFrame) -> dict[str, DataFrame]:
    segments = _segment_places(options)
    segment = F.col("segment")
    updated_at = F.col("collected_at").alias("updated_at")

    def pairs(*structs: Column) -> DataFrame:
        return segments.select(F.explode(F.array(*structs)).alias("entry"), updated_at).select(
            F.col("entry").iata_code.alias("code"), F.col("entry")["name"].alias("name"), "updated_at"
        )

    places = segments.select(F.explode(F.array(segment.origin, segment.destination)).alias("place"), updated_at)
    place = F.col("place")
    owners = options.select(F.col("option").owner.iata_code.alias("code"), F.col("option").owner["name"].alias("name"),
                            updated_at)
    return {
        "airports": places.where(place.type == "airport").select(
            place.iata_code.alias("code"), place["name"].alias("name"), place.iata_city_code.alias("city_code"),
            "updated_at",
        ).where(F.col("code").isNotNull()).distinct(),
        # Every city a fare names, from the place itself: some airports (SLC) come without a city object.
        "cities": named_codes(places.select(
            _fare_city(place).alias("code"), F.coalesce(place.city["name"], place.city_name).alias("name"),
            "updated_at",
        ), "cities"),
        "carriers": named_codes(pairs(segment.marketing_carrier, segment.operating_carrier).unionByName(owners),
                                "carriers"),
        "aircraft": named_codes(pairs(segment.aircraft), "aircraft"),
    }


def build_tables(searches: DataFrame) -> dict[str, DataFrame]:
    """Every curated table from parsed Duffel envelopes (sound, deduplicated, one per search)."""
    data = F.col(PARSED).data
    option_count = F.when(succeeded(), F.coalesce(F.size(data.offers), F.lit(0)))
    options = options_of(searches, data.offers, "id", F.col("collected_at"))
    pricings = _pricings(options)
    passenger_fares = _passenger_fares(pricings)
    slices = _slices(options)
    segments, legs = segment_and_leg_rows(_flat_segments(slices))
    return {
        "searches": search_rows(searches, data.id, F.coalesce(option_count, F.lit(0))),
        "trip_options": _option_rows(options),
        "pricings": _pricing_rows(pricings),
        "fares": _fare_rows(passenger_fares),
        "segment_fares": _segment_fare_rows(passenger_fares),
        # Duffel gives one tax total per offer, no tax lines.
        "taxes": empty_table(searches.sparkSession, "taxes"),
        "slices": _slice_rows(slices),
        "segments": segments,
        "legs": legs,
        **_dimension_tables(options),
        "tax_codes": empty_table(searches.sparkSession, "tax_codes"),
    }
