"""The curated tables' quality rules and their Dagster checks, on the structured fixtures and corrupted copies."""
import json
import shutil
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import AssetCheckKey, AssetKey, AssetSelection, AssetSpec, MaterializeResult, materialize, multi_asset
from dagster_pyspark import PySparkResource

from fare_assets.partitions import landing_hours, partition_of_landing_hour
from fare_assets.resources import LakeResource
from fare_assets.storing.lake import curated_table_path
from fare_assets.structuring.checks import curated_table_quality
from fare_assets.structuring.emr import LocalSparkRunner
from fare_assets.structuring.job import structure_raw
from fare_assets.structuring.quality import (
    FARES_CHECK,
    FOREIGN_KEYS,
    PRIMARY_KEY_CHECK,
    TOTALS_CHECK,
    duplicate_keys,
    non_positive_fares,
    orphan_rows,
    run_quality_rules,
    unreconciled_totals,
)
from fare_assets.structuring.spark import SPARK_CONF
from fare_assets.structuring.tables import TABLE_SCHEMAS, read_table
from fare_assets_tests.test_amadeus import AMADEUS_FIXTURES
from fare_assets_tests.test_amadeus import _envelope as amadeus_envelope
from fare_assets_tests.test_amadeus import _response as amadeus_response
from fare_assets_tests.test_duffel import DUFFEL_FIXTURES
from fare_assets_tests.test_duffel import _family as duffel_family
from fare_assets_tests.test_duffel import _envelope as duffel_envelope
from fare_assets_tests.test_duffel import _response as duffel_response
from fare_assets_tests.test_structuring import QPX_FIXTURES, _envelope, _family, _response, _write_raw

LANDING_HOUR, LATER_HOUR = "2026-11-28-04", "2026-11-28-05"
REDELIVERED = "09_USD_MIA-LGA.json"
# The references from fares and airports to the carrier and city dimensions, as (table, check name).
NAMING_CHECKS = (("fares", "carrier_in_carriers"), ("fares", "origin_city_in_cities"),
                 ("fares", "destination_city_in_cities"), ("airports", "city_code_in_cities"))


def _foreign_key(child: str, parent: str, columns: tuple[str, ...] | None = None):
    """The key from `child` to `parent`; `columns` tell it apart when the child names that parent twice."""
    (foreign_key,) = [fk for fk in FOREIGN_KEYS
                      if (fk.child, fk.parent) == (child, parent) and columns in (None, fk.columns)]
    return foreign_key


@pytest.fixture(scope="module")
def good_lake(spark, tmp_path_factory) -> Path:
    """Every QPX fixture, a family and a failed call in one hour; MIA-LGA delivered again the next hour."""
    root = tmp_path_factory.mktemp("quality_lake")
    envelopes = {name: _envelope(_response(name)) for name in QPX_FIXTURES}
    envelopes["family"] = _envelope(_family())
    envelopes["failed_call"] = _envelope(None, status=503, error="503 Service Unavailable")
    first = _write_raw(root, datetime(2026, 11, 28, 4, 1, tzinfo=timezone.utc), list(envelopes.values()))
    structure_raw(spark, [first], str(root))
    # A separate run, as the sensor would start it: the redelivery is stored again under the later hour.
    later = _write_raw(root, datetime(2026, 11, 28, 5, 2, tzinfo=timezone.utc), [envelopes[REDELIVERED]])
    structure_raw(spark, [later], str(root))
    return root


@pytest.fixture(scope="module")
def offer_lake(spark, tmp_path_factory) -> Path:
    """Every Duffel and Amadeus fixture in one hour, and a Duffel offer for two passengers."""
    root = tmp_path_factory.mktemp("offer_quality_lake")
    envelopes = [duffel_envelope(duffel_response(name)) for name in DUFFEL_FIXTURES]
    envelopes.append(duffel_envelope(duffel_family(), search_id="family"))
    envelopes += [amadeus_envelope(amadeus_response(name)) for name in AMADEUS_FIXTURES]
    structure_raw(spark, [_write_raw(root, datetime(2026, 11, 28, 4, 1, tzinfo=timezone.utc), envelopes)], str(root))
    return root


@pytest.fixture
def lake_copy(good_lake, tmp_path) -> Path:
    """A copy of the curated tables for one test to corrupt."""
    shutil.copytree(good_lake / "curated", tmp_path / "curated")
    return tmp_path


def _files(root: Path, table: str, hour: str | None = None) -> list[Path]:
    folder = Path(curated_table_path(str(root), table))
    pattern = f"collected_date=*/landing_hour={hour}/*.parquet" if hour else "*.parquet"
    return sorted(folder.glob(pattern))


def _rewrite(path: Path, table: pa.Table) -> None:
    """Replace a Parquet file; its stale Hadoop checksum goes too, or Spark would refuse to read it."""
    path.with_name(f".{path.name}.crc").unlink(missing_ok=True)
    pq.write_table(table, path)


def _file_with(root: Path, table: str, hour: str | None, column: str, value) -> tuple[Path, pa.Table, int]:
    """The file of `table` holding a row whose `column` is `value`, its rows and that row's index."""
    for path in _files(root, table, hour):
        rows = pq.read_table(path)
        values = rows.column(column).to_pylist()
        if value in values:
            return path, rows, values.index(value)
    raise AssertionError(f"no {table} row with {column}={value!r} in {hour}")


def _set_value(root: Path, table: str, hour: str, key_column: str, key, column: str, value) -> None:
    path, rows, index = _file_with(root, table, hour, key_column, key)
    values = rows.column(column).to_pylist()
    values[index] = value
    position = rows.schema.get_field_index(column)
    field = rows.schema.field(position)
    _rewrite(path, rows.set_column(position, field, pa.array(values, field.type)))


def _options_of(spark, root: Path, search_id: str, hour: str) -> list:
    return (read_table(spark, str(root), "trip_options")
            .where(f"search_id = '{search_id}' and landing_hour = '{hour}'").collect())


def _redelivered_search_id(spark, root: Path) -> str:
    (row,) = (read_table(spark, str(root), "searches").groupBy("search_id").count().where("count > 1").collect())
    return row.search_id


def test_every_rule_passes_on_the_structured_fixtures(spark, good_lake):
    root = str(good_lake)
    results = {f"{table} key": duplicate_keys(spark, root, table) for table in TABLE_SCHEMAS}
    results.update({f"{fk.child} {fk.name}": orphan_rows(spark, root, fk) for fk in FOREIGN_KEYS})
    results["totals"] = unreconciled_totals(spark, root)
    results["fares"] = non_positive_fares(spark, root)
    assert {name: result.failing for name, result in results.items() if not result.passed} == {}


def test_every_provider_names_known_carriers_and_cities(spark, good_lake, offer_lake):
    lakes = {"qpx": str(good_lake), "duffel and amadeus": str(offer_lake)}
    keys = [fk for fk in FOREIGN_KEYS if (fk.child, fk.name) in NAMING_CHECKS]
    failing = {(lake, fk.child, fk.name): orphan_rows(spark, root, fk).failing
               for lake, root in lakes.items() for fk in keys}
    assert failing == {(lake, *check): 0 for lake in lakes for check in NAMING_CHECKS}
    assert {AssetCheckKey(AssetKey(table), name) for table, name in NAMING_CHECKS} <= curated_table_quality.check_keys

    def city_name(lake: str, code: str) -> str:
        return read_table(spark, lakes[lake], "cities").where(f"code = '{code}'").first().name

    # QPX prices LIS→TXL to the city BER; Duffel's SLC airport comes without a city object, yet 6 fares fly there.
    assert (city_name("qpx", "BER"), city_name("duffel and amadeus", "SLC")) == ("Berlin", "Salt Lake City")
    assert read_table(spark, lakes["duffel and amadeus"], "fares").where("destination_city = 'SLC'").count() == 6


def test_a_search_redelivered_in_another_hour_is_no_duplicate(spark, good_lake):
    search_id = _redelivered_search_id(spark, good_lake)
    hours = {row.landing_hour for row in read_table(spark, str(good_lake), "searches")
             .where(f"search_id = '{search_id}'").collect()}
    assert hours == {LANDING_HOUR, LATER_HOUR}
    assert duplicate_keys(spark, str(good_lake), "trip_options").passed


def test_a_row_written_twice_in_one_hour_is_a_duplicate_key(spark, lake_copy):
    (path, *_) = _files(lake_copy, "legs", LANDING_HOUR)
    pq.write_table(pq.read_table(path).slice(0, 1), path.with_name("part-duplicate.parquet"))
    (carriers, *_) = _files(lake_copy, "carriers")
    pq.write_table(pq.read_table(carriers).slice(0, 1), carriers.with_name("part-duplicate.parquet"))

    legs = duplicate_keys(spark, str(lake_copy), "legs")
    assert (legs.failing, legs.examples[0]["copies"], legs.examples[0]["landing_hour"]) == (1, "2", LANDING_HOUR)
    assert duplicate_keys(spark, str(lake_copy), "legs", [LATER_HOUR]).passed
    assert duplicate_keys(spark, str(lake_copy), "carriers").failing == 1


def test_a_deleted_parent_orphans_its_children_of_the_same_delivery(spark, lake_copy):
    root = str(lake_copy)
    # The redelivered search's option: its copy in the later hour must not cover for the deleted one.
    option = _options_of(spark, lake_copy, _redelivered_search_id(spark, lake_copy), LANDING_HOUR)[0]
    path, rows, index = _file_with(lake_copy, "trip_options", LANDING_HOUR, "option_id", option.option_id)
    _rewrite(path, pa.concat_tables([rows.slice(0, index), rows.slice(index + 1)]))
    segments = read_table(spark, root, "segments").where(f"landing_hour = '{LANDING_HOUR}'")
    carrier = segments.where(f"option_id = '{option.option_id}'").first().carrier
    path, rows, index = _file_with(lake_copy, "carriers", None, "code", carrier)
    _rewrite(path, pa.concat_tables([rows.slice(0, index), rows.slice(index + 1)]))

    def children(table: str, hour: str | None = LANDING_HOUR) -> int:
        frame = read_table(spark, root, table).where(f"option_id = '{option.option_id}'")
        return frame.where(f"landing_hour = '{hour}'").count() if hour else frame.count()

    pricing_orphans = orphan_rows(spark, root, _foreign_key("pricings", "trip_options"))
    assert pricing_orphans.failing == children("pricings") > 0
    assert {example["option_id"] for example in pricing_orphans.examples} == {option.option_id}
    assert orphan_rows(spark, root, _foreign_key("slices", "trip_options")).failing == children("slices") > 0
    assert orphan_rows(spark, root, _foreign_key("pricings", "trip_options"), [LATER_HOUR]).passed
    with_carrier = read_table(spark, root, "segments").where(f"carrier = '{carrier}'").count()
    assert orphan_rows(spark, root, _foreign_key("segments", "carriers")).failing == with_carrier > 0


def test_a_fare_naming_an_unknown_carrier_or_city_is_an_orphan(spark, lake_copy):
    root = str(lake_copy)
    fare = read_table(spark, root, "fares").where(f"landing_hour = '{LANDING_HOUR}'").first()
    for column, value in (("carrier", "XX"), ("destination_city", "XXX"), ("origin_city", None)):
        _set_value(lake_copy, "fares", LANDING_HOUR, "option_id", fare.option_id, column, value)
    _set_value(lake_copy, "airports", None, "code", "TXL", "city_code", "XXX")

    def orphans(child: str, parent: str, column: str, hours: list[str] | None = None) -> tuple:
        result = orphan_rows(spark, root, _foreign_key(child, parent, (column,)), hours)
        return result.failing, result.examples

    assert orphans("fares", "carriers", "carrier") == (1, ({"carrier": "XX"},))
    assert orphans("fares", "cities", "destination_city") == (1, ({"destination_city": "XXX"},))
    # A fare without an origin city names no city, so nothing is left to resolve.
    assert orphans("fares", "cities", "origin_city") == (0, ())
    assert orphans("fares", "carriers", "carrier", [LATER_HOUR]) == (0, ())
    assert orphans("airports", "cities", "city_code") == (1, ({"city_code": "XXX"},))


def test_altered_amounts_do_not_reconcile(spark, lake_copy):
    root = str(lake_copy)
    pricings = read_table(spark, root, "pricings").where(f"landing_hour = '{LANDING_HOUR}'")
    family = pricings.where("passenger_count > 1").first()
    _set_value(lake_copy, "pricings", LANDING_HOUR, "option_id", family.option_id,
               "sale_total_per_pax", family.sale_total_per_pax + Decimal("0.01"))
    taxed = read_table(spark, root, "taxes").where(
        f"landing_hour = '{LANDING_HOUR}' and option_id != '{family.option_id}'").first()
    _set_value(lake_copy, "taxes", LANDING_HOUR, "option_id", taxed.option_id, "amount", taxed.amount + 1)
    # A QPX pricing without its total: only a provider that prices offers as a whole may leave it out.
    untotalled = pricings.where(f"option_id not in ('{family.option_id}', '{taxed.option_id}')").first()
    _set_value(lake_copy, "pricings", LANDING_HOUR, "option_id", untotalled.option_id, "sale_total_per_pax", None)

    result = unreconciled_totals(spark, root)
    assert result.failing == 3
    assert {example["option_id"] for example in result.examples} == {
        family.option_id, taxed.option_id, untotalled.option_id}
    assert unreconciled_totals(spark, root, [LATER_HOUR]).passed


def test_offers_with_a_tax_total_but_no_tax_lines_reconcile(spark, offer_lake):
    options = read_table(spark, str(offer_lake), "trip_options")
    itemised = read_table(spark, str(offer_lake), "taxes").select("option_id").distinct()
    untaxed = options.where("tax_amount > 0").join(itemised, "option_id", "left_anti").count()
    assert untaxed > 100
    assert unreconciled_totals(spark, str(offer_lake)).failing == 0


def test_an_offer_priced_only_as_a_whole_reconciles_by_its_currency(spark, offer_lake):
    # Duffel prices an offer of several passengers as a whole: its pricings have no per-passenger totals.
    family = read_table(spark, str(offer_lake), "trip_options").where("search_id = 'family'")
    pricings = read_table(spark, str(offer_lake), "pricings").join(family.select("option_id"), "option_id")
    assert [(row.sale_total_per_pax, row.sale_currency) for row in pricings.collect()] == [(None, "GBP")] * 2
    assert unreconciled_totals(spark, str(offer_lake)).failing == 0


def test_a_zero_fare_of_a_successful_search_is_flagged(spark, lake_copy):
    root = str(lake_copy)
    option = read_table(spark, root, "trip_options").where(f"landing_hour = '{LATER_HOUR}'").first()
    _set_value(lake_copy, "trip_options", LATER_HOUR, "option_id", option.option_id, "total_amount", Decimal(0))

    fares = non_positive_fares(spark, root)
    assert (fares.failing, fares.examples[0]["option_id"], fares.examples[0]["total_amount"]) == (
        1, option.option_id, "0.000")
    assert non_positive_fares(spark, root, [LANDING_HOUR]).passed


def _checks_run(root: Path, hour: str, check_keys: list[AssetCheckKey]):
    """Run the selected quality checks in a partitioned run over an already structured lake."""

    @multi_asset(specs=[AssetSpec(table, partitions_def=landing_hours) for table in TABLE_SCHEMAS])
    def structured_already():
        """Stands in for structuring, which the fixture ran: the run only marks the landing hour."""
        for table in TABLE_SCHEMAS:
            yield MaterializeResult(asset_key=table)

    resources = {"spark_runner": LocalSparkRunner(
                     pyspark=PySparkResource(spark_config={"spark.master": "local[*]", **SPARK_CONF})),
                 "lake": LakeResource(root=str(root))}
    selection = AssetSelection.assets(*TABLE_SCHEMAS).without_checks() | AssetSelection.checks(*check_keys)
    result = materialize([structured_already, curated_table_quality], resources=resources,
                         partition_key=partition_of_landing_hour(hour), selection=selection, raise_on_error=False)
    return {(evaluation.asset_key.path[-1], evaluation.check_name): evaluation
            for evaluation in result.get_asset_check_evaluations()}, result


def test_the_dagster_checks_see_the_landing_hour_of_their_run(spark, lake_copy):
    option = read_table(spark, str(lake_copy), "trip_options").where(f"landing_hour = '{LATER_HOUR}'").first()
    _set_value(lake_copy, "trip_options", LATER_HOUR, "option_id", option.option_id, "total_amount", Decimal(0))
    (legs, *_) = _files(lake_copy, "legs", LANDING_HOUR)
    pq.write_table(pq.read_table(legs).slice(0, 1), legs.with_name("part-duplicate.parquet"))
    selected = [AssetCheckKey(AssetKey(table), name) for table, name in (
        ("trip_options", TOTALS_CHECK), ("trip_options", FARES_CHECK), ("legs", PRIMARY_KEY_CHECK),
        ("pricings", "option_id_in_trip_options"))]

    evaluations, result = _checks_run(lake_copy, LATER_HOUR, selected)
    assert {key: evaluation.passed for key, evaluation in evaluations.items()} == {
        ("trip_options", TOTALS_CHECK): False,
        ("trip_options", FARES_CHECK): False,
        # The duplicate is in the earlier hour, which this run did not structure.
        ("legs", PRIMARY_KEY_CHECK): True,
        ("pricings", "option_id_in_trip_options"): True,
    }
    fares = evaluations[("trip_options", FARES_CHECK)]
    assert fares.severity.value == "WARN" and evaluations[("trip_options", TOTALS_CHECK)].severity.value == "ERROR"
    assert fares.metadata["failing"].value == 1 and fares.metadata["landing_hours"].text == LATER_HOUR
    assert [example["option_id"] for example in fares.metadata["examples"].data] == [option.option_id]
    # The failed ERROR rule fails the run, so the failed-run alert tells someone; the WARN rule alone would not.
    (failure,) = [event for event in result.all_events if event.event_type_value == "STEP_FAILURE"]
    assert failure.step_failure_data.user_failure_data.description == (
        f"quality checks failed for {LATER_HOUR}: trip_options/{TOTALS_CHECK} fails on 1")
    warned, warn_result = _checks_run(lake_copy, LATER_HOUR, [AssetCheckKey(AssetKey("trip_options"), FARES_CHECK)])
    assert not warned[("trip_options", FARES_CHECK)].passed and warn_result.success


def test_the_rules_run_by_key_answer_plain_json_and_refuse_an_unknown_key(spark, lake_copy):
    option = read_table(spark, str(lake_copy), "trip_options").where(f"landing_hour = '{LATER_HOUR}'").first()
    _set_value(lake_copy, "trip_options", LATER_HOUR, "option_id", option.option_id, "total_amount", Decimal(0))
    fares, legs = f"trip_options/{FARES_CHECK}", f"legs/{PRIMARY_KEY_CHECK}"

    results = run_quality_rules(spark, str(lake_copy), [LATER_HOUR], [fares, legs])

    # What an EMR step sends back as a Pipes message.
    assert json.loads(json.dumps(results)) == results
    assert results[legs] == {"failing": 0, "examples": []}
    assert results[fares]["failing"] == 1
    assert [example["option_id"] for example in results[fares]["examples"]] == [option.option_id]
    with pytest.raises(ValueError, match="no quality rule named legs/no_such_rule"):
        run_quality_rules(spark, str(lake_copy), None, [legs, "legs/no_such_rule"])
