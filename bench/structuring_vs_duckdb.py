"""Structuring throughput: the Spark structuring job vs the same flattening in DuckDB, on the same raw logs.

Spark is there to scale out on EMR; on one machine an embedded engine is the obvious alternative, so
this bench asks how much the job gives up against it. Both sides read the same BENCH_MB MB of simulator
raw logs (default 500, see bench/raw_logs.py) in one run: the Spark side is the real job,
`structure_raw`, in a warm local session; the DuckDB side reads the envelopes with an explicit schema
(the response typed as a struct, so it is parsed in the same pass), keeps the first delivery of each
search, unnests trip options, pricings, fares, taxes, slices, segments and legs with their main columns
(money split into amount and currency, times as instants, hashed option ids) and writes each as Parquet
partitioned by collection date and landing hour. DuckDB skips what the job does besides: envelope
checks, quarantine, searches, segment fares and dimensions. The bench fails if any table's row count
differs between the two, and prints MB/s of raw input and output rows/s (rows of those seven tables)
for each side and the ratio of Spark's throughput to DuckDB's.
"""
import os
import shutil
import sys
import tempfile
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import best_of, report  # noqa: E402
from bench.raw_logs import raw_log_files, total_megabytes  # noqa: E402
from fare_assets.storing.lake import RAW_HOUR_PATTERN  # noqa: E402
from fare_assets.structuring.job import structure_raw  # noqa: E402
from fare_assets.structuring.spark import local_spark_session  # noqa: E402

MEGABYTES = int(os.environ.get("BENCH_MB", "500"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "1"))
COMPARED_TABLES = ("trip_options", "pricings", "fares", "taxes", "slices", "segments", "legs")

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
            " tax STRUCT(id VARCHAR, code VARCHAR, chargeType VARCHAR, country VARCHAR, salePrice VARCHAR)[])")
_TRIP_OPTION = (f"STRUCT(id VARCHAR, saleTotal VARCHAR,"
                f" slice STRUCT(duration INTEGER, segment {_SEGMENT}[])[], pricing {_PRICING}[])")
ENVELOPE_COLUMNS = {
    "v": "BIGINT", "search_id": "VARCHAR", "provider": "VARCHAR", "collected_at": "VARCHAR",
    "query": "STRUCT(origin VARCHAR, destination VARCHAR, depart_date VARCHAR, return_date VARCHAR,"
             " adults INTEGER, children INTEGER, cabin VARCHAR)",
    "status": "INTEGER", "elapsed_ms": "BIGINT", "error": "VARCHAR",
    "response": f"STRUCT(trips STRUCT(requestId VARCHAR, tripOption {_TRIP_OPTION}[]))",
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
              FROM searches WHERE status = 200)""",
    "pricings": """
        SELECT option_id, collected_date, landing_hour,
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


def structure_with_duckdb(raw_paths: list[str], lake_root: Path) -> dict[str, int]:
    """Flatten the raw logs into COMPARED_TABLES as partitioned Parquet under `lake_root`; rows per table."""
    lake_root.mkdir(parents=True)
    connection = duckdb.connect()
    columns = "{" + ", ".join(f"'{name}': '{kind}'" for name, kind in ENVELOPE_COLUMNS.items()) + "}"
    connection.execute(f"""
        CREATE TEMP TABLE searches AS
        SELECT search_id, status, response, collected_at::TIMESTAMPTZ::DATE AS collected_date,
               concat_ws('-', {", ".join(f"regexp_extract(filename, '{RAW_HOUR_PATTERN}', {group})"
                                         for group in (1, 2, 3, 4))}) AS landing_hour
        FROM read_json($paths, format = 'newline_delimited', columns = {columns}, filename = true)
        QUALIFY row_number() OVER (PARTITION BY search_id ORDER BY filename, collected_at) = 1
    """, {"paths": raw_paths})
    for name, query in _STAGING.items():
        connection.execute(f"CREATE TEMP TABLE {name} AS {query}")
    counts = {}
    for table, query in _TABLES.items():
        (counts[table],) = connection.execute(
            f"COPY ({query}) TO '{lake_root / table}' (FORMAT parquet, PARTITION_BY (collected_date, landing_hour))"
        ).fetchone()
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

        spark_seconds = best_of(with_spark, repeat=REPEAT)
        spark.stop()
        duckdb_seconds = best_of(with_duckdb, repeat=REPEAT)
        differing = {table: (spark_counts[table], duckdb_counts[table]) for table in COMPARED_TABLES
                     if spark_counts[table] != duckdb_counts[table]}
        if differing:
            raise SystemExit(f"row counts differ (spark, duckdb): {differing}")
        output_rows = sum(spark_counts[table] for table in COMPARED_TABLES)
        rows = [
            {"side": side, "raw_objects": len(raw_paths), "raw_records": spark_counts["raw_records"],
             "megabytes": megabytes, "trip_options": spark_counts["trip_options"], "legs": spark_counts["legs"],
             "output_rows": output_rows, "seconds": seconds, "mb_per_s": megabytes / seconds,
             "output_rows_per_s": output_rows / seconds}
            for side, seconds in (("spark structure_raw (local[*])", spark_seconds),
                                  ("duckdb flattening", duckdb_seconds))
        ]
        report("structuring_vs_duckdb", rows, "spark throughput / duckdb throughput", duckdb_seconds / spark_seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
