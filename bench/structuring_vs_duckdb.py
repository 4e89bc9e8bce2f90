"""Structuring throughput: the Spark structuring job vs the same flattening in DuckDB, on the same raw logs.

Spark is there to scale out on EMR; on one machine an embedded engine is the obvious alternative, so
this bench asks how much the job gives up against it. Both sides read the same BENCH_MB MB of simulator
raw logs (default 500, see bench/raw_logs.py) in one run: the Spark side is the real job,
`structure_raw`, in a local session warmed up by a 5 MB job (its first 500 MB run still pays the JIT's
warm-up on the job's code paths, later runs do not); the DuckDB side reads the envelopes with an explicit schema
(the response typed as a struct, so it is parsed in the same pass), checks each envelope and response
with the job's reasons (quarantined records written as JSON), keeps the first delivery of each search,
and writes searches, trip options, pricings, fares, segment fares, taxes, slices, segments and legs with
their main columns (money split into amount and currency, times as instants, hashed option ids) as
Parquet partitioned by collection date and landing hour, and the five dimensions (distinct codes) as
Parquet. What DuckDB still does more simply: a segment's fare is the first one with its id (the job
prefers the copy starting in the slice's origin city), dimensions are neither merged with earlier runs
nor airports enriched from a reference, and emptied partitions are not cleared. The bench fails if the
quarantine or any fact table's row count differs between the two, and prints MB/s of raw input and
output rows/s (rows of the fact tables) for each side, first run and best of BENCH_REPEAT (at least 2), and the
ratio of Spark's throughput to DuckDB's for both.
"""
import os
import shutil
import sys
import tempfile
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import report, timings  # noqa: E402
from bench.raw_logs import raw_log_files, total_megabytes  # noqa: E402
from fare_assets.storing.lake import RAW_HOUR_PATTERN  # noqa: E402
from fare_assets.structuring.job import structure_raw  # noqa: E402
from fare_assets.structuring.spark import local_spark_session  # noqa: E402

MEGABYTES = int(os.environ.get("BENCH_MB", "500"))
# The first Spark run of a fresh JVM pays the JIT's warm-up on the job's code paths (a 5 MB warm-up job is too
# small to pay it); every later run, as on a long-lived cluster, does not. Both are reported.
REPEAT = max(2, int(os.environ.get("BENCH_REPEAT", "2")))
COMPARED_TABLES = ("searches", "trip_options", "pricings", "fares", "segment_fares", "taxes", "slices", "segments",
                   "legs")

_LEG = ("STRUCT(id VARCHAR, aircraft VARCHAR, departureTime VARCHAR, arrivalTime VARCHAR, origin VARCHAR,"
        " destination VARCHAR, duration INTEGER, mileage INTEGER, operatingDisclosure VARCHAR,"
        " connectionDuration INTEGER)")
_SEGMENT = (f"STRUCT(id VARCHAR, duration INTEGER, flight STRUCT(carrier VARCHAR, number VARCHAR), cabin VARCHAR,"
            f" bookingCode VARCHAR, bookingCodeCount INTEGER, marriedSegmentGroup VARCHAR,"
            f" connectionDuration INTEGER, leg {_LEG}[])")
_PRICING = ("STRUCT(ptc VARCHAR, passengers STRUCT(adultCount INTEGER, childCount INTEGER),"
            " baseFareTotal VARCHAR, saleFareTotal VARCHAR, saleTaxTotal VARCHAR, saleTotal VARCHAR,"
            " refundable BOOLEAN, latestTicketingTime VARCHAR, fareCalculation VARCHAR,"
            " fare STRUCT(id VARCHAR, carrier VARCHAR, origin VARCHAR, destination VARCHAR, basisCode VARCHAR)[],"
            " segmentPricing STRUCT(fareId VARCHAR, segmentId VARCHAR,"
            " freeBaggageOption STRUCT(pieces INTEGER, kilos INTEGER)[])[],"
            " tax STRUCT(id VARCHAR, code VARCHAR, chargeType VARCHAR, country VARCHAR, salePrice VARCHAR)[])")
_TRIP_OPTION = (f"STRUCT(id VARCHAR, saleTotal VARCHAR,"
                f" slice STRUCT(duration INTEGER, segment {_SEGMENT}[])[], pricing {_PRICING}[])")
_NAMED = "STRUCT(code VARCHAR, name VARCHAR)[]"
_DATA = (f"STRUCT(airport STRUCT(code VARCHAR, city VARCHAR, name VARCHAR)[], city {_NAMED}, aircraft {_NAMED},"
         f" tax STRUCT(id VARCHAR, name VARCHAR)[], carrier {_NAMED})")
ENVELOPE_COLUMNS = {
    "v": "BIGINT", "search_id": "VARCHAR", "provider": "VARCHAR", "collected_at": "VARCHAR",
    "query": "STRUCT(origin VARCHAR, destination VARCHAR, depart_date VARCHAR, return_date VARCHAR,"
             " adults INTEGER, children INTEGER, cabin VARCHAR)",
    "status": "INTEGER", "elapsed_ms": "BIGINT", "error": "VARCHAR",
    "response": f"STRUCT(trips STRUCT(requestId VARCHAR, data {_DATA}, tripOption {_TRIP_OPTION}[]))",
}
_MONEY = r"^([A-Z]{3})(-?[0-9]+(?:\.[0-9]+)?)$"


def _amount(money: str) -> str:
    return f"TRY_CAST(regexp_extract({money}, '{_MONEY}', 2) AS DECIMAL(18, 3))"


def _currency(money: str) -> str:
    return f"nullif(regexp_extract({money}, '{_MONEY}', 1), '')"


# Each step is a staging table (the next level's parent rows) or a table written as Parquet.
_STAGING = {
    "options": """
        SELECT search_id, collected_date, landing_hour, option, option_no,
               substr(sha256(search_id || '|' || coalesce(option.id, '#' || (option_no - 1))), 1, 32) AS option_id
        FROM (SELECT search_id, collected_date, landing_hour,
                     unnest(response.trips.tripOption) AS option,
                     generate_subscripts(response.trips.tripOption, 1) AS option_no
              FROM searches WHERE status BETWEEN 200 AND 299)""",
    "pricings": """
        SELECT option_id, collected_date, landing_hour, option.slice AS slices,
               unnest(option.pricing) AS pricing, generate_subscripts(option.pricing, 1) AS pricing_no
        FROM options""",
    "slices": """
        SELECT option_id, collected_date, landing_hour,
               unnest(option.slice) AS slice, generate_subscripts(option.slice, 1) AS slice_no
        FROM options""",
    "segments": """
        SELECT option_id, slice_no, collected_date, landing_hour,
               unnest(slice.segment) AS segment, generate_subscripts(slice.segment, 1) AS segment_no
        FROM slices""",
}
_TABLES = {
    "searches": """
        SELECT search_id, provider, collected_at::TIMESTAMPTZ AS collected_at, query.origin AS origin,
               query.destination AS destination, TRY_CAST(query.depart_date AS DATE) AS depart_date,
               TRY_CAST(query.return_date AS DATE) AS return_date, query.adults AS adults,
               query.children AS children, query.cabin AS cabin, status, error, elapsed_ms,
               coalesce(len(response.trips.tripOption), 0) AS option_count, response.trips.requestId AS request_id,
               filename AS raw_key, collected_date, landing_hour
        FROM searches""",
    "trip_options": f"""
        SELECT option_id, search_id, option.id AS provider_option_id,
               {_amount('option.saleTotal')} AS total_amount, {_currency('option.saleTotal')} AS currency,
               list_bool_and(list_transform(option.pricing, lambda p: p.refundable)) AS refundable,
               list_min(list_transform(option.pricing, lambda p: TRY_CAST(p.latestTicketingTime AS TIMESTAMPTZ)))
                   AS latest_ticketing_at,
               collected_date, landing_hour
        FROM options""",
    "pricings": f"""
        SELECT option_id, pricing_no, pricing.ptc AS passenger_type,
               coalesce(pricing.passengers.adultCount, 0) + coalesce(pricing.passengers.childCount, 0)
                   AS passenger_count,
               {_amount('pricing.saleTotal')} AS sale_total_per_pax, {_currency('pricing.saleTotal')} AS sale_currency,
               {_amount('pricing.saleFareTotal')} AS sale_fare_per_pax,
               {_amount('pricing.baseFareTotal')} AS base_per_pax, {_currency('pricing.baseFareTotal')} AS base_currency,
               {_amount('pricing.saleTaxTotal')} AS tax_per_pax, pricing.fareCalculation AS fare_calculation,
               collected_date, landing_hour
        FROM pricings""",
    "fares": """
        SELECT option_id, pricing_no, fare_no, fare.id AS provider_fare_id, fare.carrier AS carrier,
               fare.origin AS origin_city, fare.destination AS destination_city, fare.basisCode AS basis_code,
               collected_date, landing_hour
        FROM (SELECT option_id, pricing_no, collected_date, landing_hour,
                     unnest(pricing.fare) AS fare, generate_subscripts(pricing.fare, 1) AS fare_no
              FROM pricings)""",
    "segment_fares": """
        SELECT option_id, pricing_no, segment.slice_no AS slice_no, segment.segment_no AS segment_no,
               list_position(list_transform(pricing.fare, lambda fare: fare.id), segment_pricing.fareId) AS fare_no,
               segment_pricing.freeBaggageOption[1].pieces AS free_bag_pieces,
               segment_pricing.freeBaggageOption[1].kilos AS free_bag_kilos, collected_date, landing_hour
        FROM (SELECT *, list_filter(flatten(list_transform(slices, lambda slice, slice_no: list_transform(
                            slice.segment, lambda segment, segment_no:
                                {'id': segment.id, 'slice_no': slice_no, 'segment_no': segment_no}))),
                        lambda position: position.id = segment_pricing.segmentId)[1] AS segment
              FROM (SELECT option_id, pricing_no, pricing, slices, collected_date, landing_hour,
                           unnest(pricing.segmentPricing) AS segment_pricing
                    FROM pricings))""",
    "taxes": f"""
        SELECT option_id, pricing_no, tax_no, tax.id AS tax_id, tax.code AS tax_code,
               tax.chargeType AS charge_type, {_amount('tax.salePrice')} AS amount,
               {_currency('tax.salePrice')} AS currency, tax.country AS country, collected_date, landing_hour
        FROM (SELECT option_id, pricing_no, collected_date, landing_hour,
                     unnest(pricing.tax) AS tax, generate_subscripts(pricing.tax, 1) AS tax_no
              FROM pricings)""",
    "slices": """
        SELECT option_id, slice_no, slice.segment[1].leg[1].origin AS origin,
               slice.segment[-1].leg[-1].destination AS destination, slice.duration AS duration_min,
               list_sum(list_transform(slice.segment, lambda s: len(s.leg))) - 1 AS stops, collected_date, landing_hour
        FROM slices""",
    "segments": """
        SELECT option_id, slice_no, segment_no, segment.id AS provider_segment_id,
               segment.flight.carrier AS carrier, segment.flight.number AS flight_number, segment.cabin AS cabin,
               segment.bookingCode AS booking_code, segment.bookingCodeCount AS seats_left,
               segment.duration AS duration_min,
               coalesce(segment.connectionDuration, segment.leg[-1].connectionDuration) AS connection_min,
               segment.marriedSegmentGroup AS married_segment_group, collected_date, landing_hour
        FROM segments""",
    "legs": """
        SELECT option_id, slice_no, segment_no, leg_no, leg.origin AS origin, leg.destination AS destination,
               TRY_CAST(leg.departureTime AS TIMESTAMPTZ) AS departs_at,
               TRY_CAST(left(leg.departureTime, 16) AS TIMESTAMP) AS departs_local,
               TRY_CAST(leg.arrivalTime AS TIMESTAMPTZ) AS arrives_at,
               TRY_CAST(left(leg.arrivalTime, 16) AS TIMESTAMP) AS arrives_local,
               leg.aircraft AS aircraft, leg.duration AS duration_min, leg.mileage AS mileage,
               leg.operatingDisclosure AS operating_disclosure, leg.connectionDuration AS connection_min,
               collected_date, landing_hour
        FROM (SELECT option_id, slice_no, segment_no, collected_date, landing_hour,
                     unnest(segment.leg) AS leg, generate_subscripts(segment.leg, 1) AS leg_no
              FROM segments)""",
}


# Why a record cannot be structured (the job's envelope and QPX response checks), or NULL.
_PROBLEM = f"""CASE
    WHEN v IS NULL THEN 'missing envelope version v'
    WHEN v <> 1 THEN 'unsupported envelope version ' || v
    WHEN trim(search_id) IS NULL OR trim(search_id) = '' THEN 'missing search_id'
    WHEN provider IS NULL THEN 'missing provider'
    WHEN provider <> 'qpx' THEN 'unknown provider ' || provider
    WHEN TRY_CAST(collected_at AS TIMESTAMPTZ) IS NULL THEN 'missing or invalid collected_at'
    WHEN status IS NULL THEN 'missing status'
    WHEN query.origin IS NULL OR query.destination IS NULL OR TRY_CAST(query.depart_date AS DATE) IS NULL
        THEN 'query without origin, destination and a valid depart_date'
    WHEN query.return_date IS NOT NULL AND TRY_CAST(query.return_date AS DATE) IS NULL
        THEN 'query with an invalid return_date'
    WHEN status BETWEEN 200 AND 299 AND response IS NULL THEN 'successful status without a QPX response'
    WHEN status BETWEEN 200 AND 299 AND response.trips IS NULL
        THEN 'successful status with a response that is not QPX (no trips)'
    WHEN status BETWEEN 200 AND 299 AND list_bool_or(list_transform(response.trips.tripOption, lambda option:
             NOT coalesce({_amount('option.saleTotal')} > 0 AND {_currency('option.saleTotal')} IS NOT NULL, false)))
        THEN 'successful status with a trip option without a readable, positive saleTotal'
END"""
_DIMENSIONS = {
    "airports": "SELECT DISTINCT entry.code, entry.name, entry.city AS city_code"
                " FROM (SELECT unnest(response.trips.data.airport) AS entry FROM searches)",
    **{table: f"SELECT DISTINCT entry.{code} AS code, entry.name"
              f" FROM (SELECT unnest(response.trips.data.{field}) AS entry FROM searches)"
       for table, field, code in (("cities", "city", "code"), ("aircraft", "aircraft", "code"),
                                  ("tax_codes", "tax", "id"), ("carriers", "carrier", "code"))},
}


def structure_with_duckdb(raw_paths: list[str], lake_root: Path) -> dict[str, int]:
    """Flatten the raw logs into the curated tables as Parquet under `lake_root`; rows per table and quarantined."""
    lake_root.mkdir(parents=True)
    connection = duckdb.connect()
    columns = "{" + ", ".join(f"'{name}': '{kind}'" for name, kind in ENVELOPE_COLUMNS.items()) + "}"
    connection.execute(f"""
        CREATE TEMP TABLE envelopes AS
        SELECT *, {_PROBLEM} AS reason
        FROM (SELECT *, TRY_CAST(collected_at AS TIMESTAMPTZ)::DATE AS collected_date,
                     concat_ws('-', {", ".join(f"regexp_extract(filename, '{RAW_HOUR_PATTERN}', {group})"
                                               for group in (1, 2, 3, 4))}) AS landing_hour
              FROM read_json($paths, format = 'newline_delimited', columns = {columns}, filename = true))
    """, {"paths": raw_paths})
    connection.execute("""
        CREATE TEMP TABLE searches AS
        SELECT * FROM envelopes WHERE reason IS NULL
        QUALIFY row_number() OVER (
            PARTITION BY landing_hour, search_id
            ORDER BY (status BETWEEN 200 AND 299 AND response IS NOT NULL) DESC, filename, collected_at,
                     hash(status, elapsed_ms, response, error)) = 1
    """)
    (quarantined,) = connection.execute(
        f"COPY (SELECT filename AS raw_key, reason, landing_hour FROM envelopes WHERE reason IS NOT NULL)"
        f" TO '{lake_root / 'quarantine.json'}' (FORMAT json)").fetchone()
    for name, query in _STAGING.items():
        connection.execute(f"CREATE TEMP TABLE {name} AS {query}")
    counts = {"quarantined": quarantined}
    for table, query in _TABLES.items():
        (counts[table],) = connection.execute(
            f"COPY ({query}) TO '{lake_root / table}' (FORMAT parquet, PARTITION_BY (collected_date, landing_hour))"
        ).fetchone()
    for table, query in _DIMENSIONS.items():
        (counts[table],) = connection.execute(
            f"COPY ({query}) TO '{lake_root / table}.parquet' (FORMAT parquet)").fetchone()
    connection.close()
    return counts


def main() -> None:
    raw_paths = raw_log_files(MEGABYTES)
    megabytes = total_megabytes(raw_paths)
    work = Path(tempfile.mkdtemp(prefix="fares-duckdb-bench-"))
    try:
        spark = local_spark_session("bench-structuring-vs-duckdb")
        spark.sparkContext.setLogLevel("ERROR")
        structure_raw(spark, raw_paths[:1], str(work / "warm-up"))
        spark_counts, duckdb_counts = {}, {}

        def with_spark():
            shutil.rmtree(work / "spark", ignore_errors=True)
            spark_counts.update(structure_raw(spark, raw_paths, str(work / "spark")))

        def with_duckdb():
            shutil.rmtree(work / "duckdb", ignore_errors=True)
            duckdb_counts.update(structure_with_duckdb(raw_paths, work / "duckdb"))

        spark_runs = timings(with_spark, REPEAT)
        spark.stop()
        duckdb_runs = timings(with_duckdb, REPEAT)
        differing = {table: (spark_counts[table], duckdb_counts[table]) for table in (*COMPARED_TABLES, "quarantined")
                     if spark_counts[table] != duckdb_counts[table]}
        if differing:
            raise SystemExit(f"row counts differ (spark, duckdb): {differing}")
        output_rows = sum(spark_counts[table] for table in COMPARED_TABLES)
        rows = [
            {"side": side, "raw_objects": len(raw_paths), "raw_records": spark_counts["raw_records"],
             "megabytes": megabytes, "trip_options": spark_counts["trip_options"], "legs": spark_counts["legs"],
             "output_rows": output_rows, "seconds": seconds, "mb_per_s": megabytes / seconds,
             "output_rows_per_s": output_rows / seconds}
            for side, seconds in (("spark structure_raw (local[*]), first run", spark_runs[0]),
                                  (f"spark structure_raw (local[*]), best of {REPEAT}", min(spark_runs)),
                                  ("duckdb flattening, first run", duckdb_runs[0]),
                                  (f"duckdb flattening, best of {REPEAT}", min(duckdb_runs)))
        ]
        report("structuring_vs_duckdb", rows, f"best of {REPEAT}: spark throughput / duckdb throughput",
               min(duckdb_runs) / min(spark_runs),
               {"first runs: spark throughput / duckdb throughput": duckdb_runs[0] / spark_runs[0]})
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
