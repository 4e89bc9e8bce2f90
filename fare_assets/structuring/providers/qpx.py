"""Google QPX Express `trips.search` responses → the curated tables (Spark SQL functions only)."""
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    IntegerType,
    StringType,
    StructField,
    StructType,
    TimestampNTZType,
)

from fare_assets.structuring.envelope import search_rows, without_response
from fare_assets.structuring.providers.offers import (
    OTHER_TRIP_SHAPE,
    any_other_trip_shape,
    any_unpriced,
    succeeded,
    whole_int,
)
from fare_assets.structuring.spark_compat import try_cast
from fare_assets.structuring.tables import MONEY, PARTITION_COLUMNS, conform

NAME = "qpx"
# Every QPX pricing gives its passenger type's `saleTotal`.
PRICES_EACH_PASSENGER = True
PARSED = "parsed_response"
# Each trip option says what it is, so the options in an answer's text can be counted without the parse.
TRIP_OPTION_MARKER = r'"kind"\s*:\s*"qpxexpress#tripOption"'

_STRING, _INT = StringType(), IntegerType()


def _struct(*pairs) -> StructType:
    return StructType([StructField(name, data_type) for name, data_type in pairs])


_NAMED_CODE = ArrayType(_struct(("code", _STRING), ("name", _STRING)))

# Only the fields the tables need; anything else in the response is ignored, never inferred.
QPX_RESPONSE_SCHEMA = _struct(
    ("kind", _STRING),
    ("trips", _struct(
        ("requestId", _STRING),
        ("data", _struct(
            ("airport", ArrayType(_struct(("code", _STRING), ("city", _STRING), ("name", _STRING)))),
            ("city", _NAMED_CODE),
            ("aircraft", _NAMED_CODE),
            ("tax", ArrayType(_struct(("id", _STRING), ("name", _STRING)))),
            ("carrier", _NAMED_CODE),
        )),
        ("tripOption", ArrayType(_struct(
            ("id", _STRING),
            ("saleTotal", _STRING),
            ("slice", ArrayType(_struct(
                ("duration", _INT),
                ("segment", ArrayType(_struct(
                    ("id", _STRING),
                    ("duration", _INT),
                    ("flight", _struct(("carrier", _STRING), ("number", _STRING))),
                    ("cabin", _STRING),
                    ("bookingCode", _STRING),
                    ("bookingCodeCount", _INT),
                    ("marriedSegmentGroup", _STRING),
                    ("connectionDuration", _INT),
                    ("leg", ArrayType(_struct(
                        ("id", _STRING),
                        ("aircraft", _STRING),
                        ("departureTime", _STRING),
                        ("arrivalTime", _STRING),
                        ("origin", _STRING),
                        ("destination", _STRING),
                        ("duration", _INT),
                        ("mileage", _INT),
                        ("operatingDisclosure", _STRING),
                        ("connectionDuration", _INT),
                    ))),
                ))),
            ))),
            ("pricing", ArrayType(_struct(
                ("ptc", _STRING),
                ("passengers", _struct(
                    ("adultCount", _INT),
                    ("childCount", _INT),
                    ("seniorCount", _INT),
                    ("infantInLapCount", _INT),
                    ("infantInSeatCount", _INT),
                )),
                ("baseFareTotal", _STRING),
                ("saleFareTotal", _STRING),
                ("saleTaxTotal", _STRING),
                ("saleTotal", _STRING),
                ("refundable", BooleanType()),
                ("latestTicketingTime", _STRING),
                ("fareCalculation", _STRING),
                ("fare", ArrayType(_struct(
                    ("id", _STRING),
                    ("carrier", _STRING),
                    ("origin", _STRING),
                    ("destination", _STRING),
                    ("basisCode", _STRING),
                ))),
                ("segmentPricing", ArrayType(_struct(
                    ("fareId", _STRING),
                    ("segmentId", _STRING),
                    ("freeBaggageOption", ArrayType(_struct(("pieces", _INT), ("kilos", _INT)))),
                ))),
                ("tax", ArrayType(_struct(
                    ("id", _STRING),
                    ("code", _STRING),
                    ("chargeType", _STRING),
                    ("country", _STRING),
                    ("salePrice", _STRING),
                ))),
            ))),
        ))),
    )),
)

# "USD929.60", "INR7150": currency then amount; whole-number currencies have no decimal point.
_MONEY_PATTERN = r"^([A-Z]{3})(-?[0-9]+(?:\.[0-9]+)?)$"
# "2016-06-11T21:30-05:00": QPX times are local wall times carrying their UTC offset.
_TIME_FORMAT = "yyyy-MM-dd'T'HH:mm[:ss]XXX"
_WALL_TIME_PATTERN = r"^([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(?::[0-9]{2})?)"

_PARTITIONS = list(PARTITION_COLUMNS)


def _amount(money: Column) -> Column:
    return try_cast(F.regexp_extract(money, _MONEY_PATTERN, 2), MONEY)


def _currency(money: Column) -> Column:
    return F.nullif(F.regexp_extract(money, _MONEY_PATTERN, 1), F.lit(""))


def _instant(time: Column) -> Column:
    return F.try_to_timestamp(time, F.lit(_TIME_FORMAT))


def _wall_time(time: Column) -> Column:
    return try_cast(F.regexp_extract(time, _WALL_TIME_PATTERN, 1), TimestampNTZType())


def _passenger_count(pricing: Column) -> Column:
    # Added as longs: five counts of up to 2^31 each cannot overflow them (Spark 4's ANSI mode would stop the run).
    passengers = pricing.passengers
    return reduce(Column.__add__, [F.coalesce(passengers[kind], F.lit(0)).cast("long") for kind in (
        "adultCount", "childCount", "seniorCount", "infantInLapCount", "infantInSeatCount")])


def _total_over_passengers(pricings: Column, per_pax_field: str) -> Column:
    """Sum over pricings of a per-passenger amount times that pricing's passengers (null when it does not fit)."""
    return F.aggregate(
        pricings,
        F.lit(0).cast(MONEY),
        lambda total, pricing: try_cast(
            F.try_add(total, F.try_multiply(_amount(pricing[per_pax_field]), _passenger_count(pricing))), MONEY),
    )


def _lookup(entries: Column, key_field: str, key: Column) -> Column:
    """The first struct in `entries` whose `key_field` equals `key` (null when none does)."""
    return F.try_element_at(F.filter(entries, lambda entry: entry[key_field] == key), F.lit(1))


def parse_responses(envelopes: DataFrame) -> DataFrame:
    """The envelopes with their QPX response parsed into `PARSED`."""
    return envelopes.withColumn(PARSED, F.from_json("response", QPX_RESPONSE_SCHEMA))


def _options_read() -> Column:
    """How many trip options the parse read (QPX leaves the list out of an answer that found nothing)."""
    return F.coalesce(F.size(F.col(PARSED).trips.tripOption), F.lit(0))


def options_unread() -> Column:
    """Whether the response's text names more or fewer trip options than the parse read."""
    # A list the provider renamed would read as no options at all, and the search be kept as one that found nothing.
    # (Duffel and Amadeus always send their list: a missing one quarantines the answer already.)
    return F.regexp_count(F.col("response"), F.lit(TRIP_OPTION_MARKER)) != _options_read()


def response_problem() -> Column:
    """Why a QPX record cannot be structured, or null (failed calls are kept as searches)."""
    # Any 2xx is an answer, as for the other providers: one without a readable body is quarantined, not kept as a
    # failed search with its body dropped.
    answered = succeeded()
    return (
        F.when(answered & F.col("response").isNull(), without_response("successful status without a QPX response"))
        .when(answered & F.col(PARSED).trips.isNull(),
              F.lit("successful status with a response that is not QPX (no trips)"))
        .when(answered & any_unpriced(F.col(PARSED).trips.tripOption, lambda option: _amount(option.saleTotal),
                                       lambda option: _currency(option.saleTotal)),
              F.lit("successful status with a trip option without a readable, positive saleTotal"))
        .when(answered & options_unread(),
              F.lit("successful status with more or fewer trip options in its text than were read (has QPX's format "
                    "changed?)"))
        .when(answered & any_other_trip_shape(F.col(PARSED).trips.tripOption, lambda option: option.slice),
              F.lit(OTHER_TRIP_SHAPE))
    )


def _trip_options(searches: DataFrame) -> DataFrame:
    """One row per trip option, with its deterministic `option_id` and the raw option struct."""
    exploded = searches.where(succeeded()).select(
        "search_id", *_PARTITIONS, F.col(PARSED).trips.data.airport.alias("airports"),
        F.posexplode(F.col(PARSED).trips.tripOption).alias("option_pos", "option"),
    )
    # QPX always sends an option id; the position stands in so a missing one cannot collide.
    provider_option_id = F.coalesce(F.col("option").id, F.concat(F.lit("#"), F.col("option_pos")))
    # 128 bits of a hash of (search, provider option): stable across reprocessing and compact.
    option_id = F.substring(F.sha2(F.concat_ws("|", "search_id", provider_option_id), 256), 1, 32)
    return exploded.withColumn("provider_option_id", provider_option_id).withColumn("option_id", option_id)


def _option_rows(options: DataFrame) -> DataFrame:
    option = F.col("option")
    pricings = option.pricing
    first_pricing = F.try_element_at(pricings, F.lit(1))
    return conform(
        options.select(
            "option_id", "search_id", "provider_option_id",
            _amount(option.saleTotal).alias("total_amount"),
            _currency(option.saleTotal).alias("currency"),
            _total_over_passengers(pricings, "baseFareTotal").alias("base_amount"),
            # Base fares may be filed in another currency than the sale (USD base, LBP sale).
            _currency(first_pricing.baseFareTotal).alias("base_currency"),
            _total_over_passengers(pricings, "saleTaxTotal").alias("tax_amount"),
            F.forall(pricings, lambda pricing: pricing.refundable).alias("refundable"),
            F.array_min(F.transform(pricings, lambda pricing: _instant(pricing.latestTicketingTime)))
            .alias("latest_ticketing_at"),
            *_PARTITIONS,
        ),
        "trip_options",
    )


def _pricings(options: DataFrame) -> DataFrame:
    """One row per pricing (one per passenger type), keeping the option's slices for lookups."""
    return options.select(
        "option_id", *_PARTITIONS, "airports", F.col("option").slice.alias("slices"),
        F.posexplode(F.col("option").pricing).alias("pricing_pos", "pricing"),
    ).withColumn("pricing_no", F.col("pricing_pos") + 1)


def _pricing_rows(pricings: DataFrame) -> DataFrame:
    pricing = F.col("pricing")
    return conform(
        pricings.select(
            "option_id", "pricing_no",
            pricing.ptc.alias("passenger_type"),
            whole_int(_passenger_count(pricing)).alias("passenger_count"),
            _amount(pricing.saleTotal).alias("sale_total_per_pax"),
            _currency(pricing.saleTotal).alias("sale_currency"),
            _amount(pricing.saleFareTotal).alias("sale_fare_per_pax"),
            _amount(pricing.baseFareTotal).alias("base_per_pax"),
            _currency(pricing.baseFareTotal).alias("base_currency"),
            _amount(pricing.saleTaxTotal).alias("tax_per_pax"),
            pricing.fareCalculation.alias("fare_calculation"),
            *_PARTITIONS,
        ),
        "pricings",
    )


def _fare_rows(pricings: DataFrame) -> DataFrame:
    fare = F.col("fare")
    return conform(
        pricings.select(
            "option_id", "pricing_no", *_PARTITIONS,
            F.posexplode(F.col("pricing").fare).alias("fare_pos", "fare"),
        ).select(
            "option_id", "pricing_no", (F.col("fare_pos") + 1).alias("fare_no"),
            fare.id.alias("provider_fare_id"), fare.carrier.alias("carrier"),
            # Fares are priced city to city (LON, PAR) while legs fly airport to airport (LHR, CDG).
            fare.origin.alias("origin_city"), fare.destination.alias("destination_city"),
            fare.basisCode.alias("basis_code"), *_PARTITIONS,
        ),
        "fares",
    )


def _segment_fare_rows(pricings: DataFrame) -> DataFrame:
    """Which fare prices each segment, matched by id: `segmentPricing` is not in segment order.

    A round trip can price both directions with the same fare, listed twice under one id (MIA→YTO and YTO→MIA):
    the segment then takes the copy that starts where its fare component starts, the origin city of the first of
    its slice's consecutive segments priced by that fare (a return from New York via Toronto to Miami prices
    Toronto→Miami with the YTO→MIA copy).
    """
    def city_of(airport: Column) -> Column:
        return F.coalesce(_lookup(F.col("airports"), "code", airport).city, airport)

    segment_positions = F.flatten(F.transform(
        F.col("slices"),
        lambda slice_, slice_pos: F.transform(
            slice_.segment,
            lambda segment, segment_pos: F.struct(
                segment.id.alias("id"), (slice_pos + 1).alias("slice_no"), (segment_pos + 1).alias("segment_no"),
                F.try_element_at(segment.leg, F.lit(1)).origin.alias("origin"),
            ),
        ),
    ))

    def component_start_city(segment: Column) -> Column:
        """The origin city of the first of the consecutive segments of the segment's slice priced by its fare."""
        def fare_id_of(position: Column) -> Column:
            return _lookup(F.col("pricing").segmentPricing, "segmentId", position.id).fareId

        # Positions run slice by slice, so a segment's predecessor in its slice is the element before it.
        starts = F.filter(F.col("segment_positions"), lambda position, index: (
            (position.slice_no == segment.slice_no) & (position.segment_no <= segment.segment_no)
            & F.when(position.segment_no == 1, F.lit(True)).otherwise(
                ~fare_id_of(F.try_element_at(F.col("segment_positions"), index)).eqNullSafe(fare_id_of(position)))))
        return city_of(F.try_element_at(starts, F.lit(-1)).origin)

    fare_positions = F.transform(
        F.col("pricing").fare,
        lambda fare, fare_pos: F.struct(
            fare.id.alias("id"), fare.origin.alias("origin"), (fare_pos + 1).alias("fare_no")
        ),
    )

    def matched(segment_pricing: Column) -> Column:
        """The segment pricing with its segment and the fares of its fare id, each looked up once."""
        return F.struct(
            segment_pricing.alias("pricing"),
            _lookup(F.col("segment_positions"), "id", segment_pricing.segmentId).alias("segment"),
            F.filter(F.col("fare_positions"), lambda fare: fare.id == segment_pricing.fareId).alias("same_id"),
        )

    def resolved(match: Column) -> Column:
        first_copy = F.try_element_at(match.same_id, F.lit(1)).fare_no
        # Walking back through the slice is only needed, and only paid for, when the id names two copies.
        from_component_start = F.filter(
            match.same_id, lambda fare: fare.origin == component_start_city(match.segment))
        baggage = F.try_element_at(match.pricing.freeBaggageOption, F.lit(1))
        return F.struct(
            match.segment.slice_no.alias("slice_no"), match.segment.segment_no.alias("segment_no"),
            F.when(F.size(match.same_id) > 1,
                   F.coalesce(F.try_element_at(from_component_start, F.lit(1)).fare_no, first_copy))
            .otherwise(first_copy).alias("fare_no"),
            baggage.pieces.alias("free_bag_pieces"), baggage.kilos.alias("free_bag_kilos"),
        )

    # Each segment pricing is resolved inside its array and only the small result exploded: exploding first
    # copied both position arrays into every segment's row, which made this the job's slowest table.
    segment_fares = F.transform(F.transform(F.col("pricing").segmentPricing, matched), resolved)
    return conform(
        pricings.select(
            "option_id", "pricing_no", *_PARTITIONS, "pricing", "airports",
            segment_positions.alias("segment_positions"), fare_positions.alias("fare_positions"),
        ).select(
            "option_id", "pricing_no", *_PARTITIONS, F.explode(segment_fares).alias("segment_fare"),
        ).select("option_id", "pricing_no", "segment_fare.*", *_PARTITIONS),
        "segment_fares",
    )


def _tax_rows(pricings: DataFrame) -> DataFrame:
    tax = F.col("tax")
    return conform(
        pricings.select(
            "option_id", "pricing_no", *_PARTITIONS,
            # One pricing may list the same tax id twice with different amounts: tax_no keeps both.
            F.posexplode(F.col("pricing").tax).alias("tax_pos", "tax"),
        ).select(
            "option_id", "pricing_no", (F.col("tax_pos") + 1).alias("tax_no"),
            tax.id.alias("tax_id"), tax.code.alias("tax_code"), tax.chargeType.alias("charge_type"),
            _amount(tax.salePrice).alias("amount"), _currency(tax.salePrice).alias("currency"),
            tax.country.alias("country"), *_PARTITIONS,
        ),
        "taxes",
    )


def _slices(options: DataFrame) -> DataFrame:
    return options.select(
        "option_id", *_PARTITIONS, F.posexplode(F.col("option").slice).alias("slice_pos", "slice")
    ).withColumn("slice_no", F.col("slice_pos") + 1)


def _slice_rows(slices: DataFrame) -> DataFrame:
    segments = F.col("slice").segment
    first_leg = F.try_element_at(F.try_element_at(segments, F.lit(1)).leg, F.lit(1))
    last_leg = F.try_element_at(F.try_element_at(segments, F.lit(-1)).leg, F.lit(-1))
    # A stop is every landing between origin and destination: connections and through-flight stops.
    leg_count = F.aggregate(segments, F.lit(0), lambda count, segment: count + F.size(segment.leg))
    return conform(
        slices.select(
            "option_id", "slice_no",
            first_leg.origin.alias("origin"), last_leg.destination.alias("destination"),
            F.col("slice").duration.alias("duration_min"),
            (leg_count - 1).alias("stops"),
            *_PARTITIONS,
        ),
        "slices",
    )


def _segments(slices: DataFrame) -> DataFrame:
    return slices.select(
        "option_id", "slice_no", *_PARTITIONS,
        F.posexplode(F.col("slice").segment).alias("segment_pos", "segment"),
    ).withColumn("segment_no", F.col("segment_pos") + 1)


def _segment_rows(segments: DataFrame) -> DataFrame:
    segment = F.col("segment")
    last_leg = F.try_element_at(segment.leg, F.lit(-1))
    return conform(
        segments.select(
            "option_id", "slice_no", "segment_no",
            segment.id.alias("provider_segment_id"),
            segment.flight.carrier.alias("carrier"), segment.flight.number.alias("flight_number"),
            segment.cabin.alias("cabin"), segment.bookingCode.alias("booking_code"),
            segment.bookingCodeCount.alias("seats_left"), segment.duration.alias("duration_min"),
            # The connection after a segment is given on the segment or on its last leg.
            F.coalesce(segment.connectionDuration, last_leg.connectionDuration).alias("connection_min"),
            segment.marriedSegmentGroup.alias("married_segment_group"),
            *_PARTITIONS,
        ),
        "segments",
    )


def _leg_rows(segments: DataFrame) -> DataFrame:
    leg = F.col("leg")
    return conform(
        segments.select(
            "option_id", "slice_no", "segment_no", *_PARTITIONS,
            F.posexplode(F.col("segment").leg).alias("leg_pos", "leg"),
        ).select(
            "option_id", "slice_no", "segment_no", (F.col("leg_pos") + 1).alias("leg_no"),
            leg.origin.alias("origin"), leg.destination.alias("destination"),
            _instant(leg.departureTime).alias("departs_at"), _wall_time(leg.departureTime).alias("departs_local"),
            _instant(leg.arrivalTime).alias("arrives_at"), _wall_time(leg.arrivalTime).alias("arrives_local"),
            leg.aircraft.alias("aircraft"), leg.duration.alias("duration_min"), leg.mileage.alias("mileage"),
            # Codeshares show only as free text ("OPERATED BY CZECH AIRLINES").
            leg.operatingDisclosure.alias("operating_disclosure"),
            leg.connectionDuration.alias("connection_min"),
            *_PARTITIONS,
        ),
        "legs",
    )


def _dimension_rows(searches: DataFrame, data_field: str, code_field: str, table: str) -> DataFrame:
    """Code/name pairs from the response's `data` dictionary, stamped with when they were seen."""
    entry = F.col("entry")
    return conform(
        searches.select("collected_at", F.explode(F.col(PARSED).trips.data[data_field]).alias("entry")).select(
            entry[code_field].alias("code"), entry["name"].alias("name"), F.col("collected_at").alias("updated_at")
        ),
        table,
    )


def _airport_rows(searches: DataFrame) -> DataFrame:
    """Airports as QPX names them; the job adds country, time zone and position."""
    entry = F.col("entry")
    return searches.select("collected_at", F.explode(F.col(PARSED).trips.data.airport).alias("entry")).select(
        entry.code.alias("code"), entry["name"].alias("name"), entry.city.alias("city_code"),
        F.col("collected_at").alias("updated_at"),
    )


def build_tables(searches: DataFrame) -> dict[str, DataFrame]:
    """Every curated table from parsed QPX envelopes (sound, deduplicated, one per search)."""
    parsed = F.col(PARSED)
    option_count = F.when(succeeded(), _options_read())
    options = _trip_options(searches)
    pricings = _pricings(options)
    slices = _slices(options)
    segments = _segments(slices)
    return {
        "searches": search_rows(searches, parsed.trips.requestId, F.coalesce(option_count, F.lit(0))),
        "trip_options": _option_rows(options),
        "pricings": _pricing_rows(pricings),
        "fares": _fare_rows(pricings),
        "segment_fares": _segment_fare_rows(pricings),
        "taxes": _tax_rows(pricings),
        "slices": _slice_rows(slices),
        "segments": _segment_rows(segments),
        "legs": _leg_rows(segments),
        "airports": _airport_rows(searches),
        "cities": _dimension_rows(searches, "city", "code", "cities"),
        "carriers": _dimension_rows(searches, "carrier", "code", "carriers"),
        "aircraft": _dimension_rows(searches, "aircraft", "code", "aircraft"),
        "tax_codes": _dimension_rows(searches, "tax", "id", "tax_codes"),
    }
