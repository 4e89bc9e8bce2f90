"""Dagster asset checks that run the curated tables' quality rules over the landing hours of a run."""
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

from dagster import (AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, MetadataValue,
                     multi_asset_check)
from dagster_pyspark import PySparkResource
from pyspark.sql import SparkSession

from fare_assets.partitions import landing_hour_of_partition, landing_hours
from fare_assets.resources import LakeResource
from fare_assets.structuring.quality import (
    FOREIGN_KEYS,
    RuleResult,
    duplicate_keys,
    non_positive_fares,
    orphan_rows,
    primary_key,
    unreconciled_totals,
)
from fare_assets.structuring.tables import TABLE_SCHEMAS

PRIMARY_KEY_CHECK = "primary_key_unique"
TOTALS_CHECK = "totals_reconcile"
FARES_CHECK = "fares_positive"

# A rule reads the lake at a root for some landing hours (None: all).
Rule = Callable[[SparkSession, str, list[str] | None], RuleResult]


@dataclass(frozen=True)
class QualityCheck:
    """One asset check: its spec, the rule it runs and how bad a failure is."""

    spec: AssetCheckSpec
    rule: Rule
    severity: AssetCheckSeverity = AssetCheckSeverity.ERROR


def _spec(name: str, table: str, description: str) -> AssetCheckSpec:
    # Partitioned like the tables, so a check run with them sees the landing hours they structured.
    return AssetCheckSpec(name, asset=table, description=description, partitions_def=landing_hours)


QUALITY_CHECKS: tuple[QualityCheck, ...] = (
    *[QualityCheck(_spec(PRIMARY_KEY_CHECK, table, f"No two rows share ({', '.join(primary_key(table))})."),
                   partial(duplicate_keys, table=table))
      for table in TABLE_SCHEMAS],
    *[QualityCheck(_spec(foreign_key.name, foreign_key.child,
                         f"Every ({', '.join(foreign_key.columns)}) names a row of {foreign_key.parent}."),
                   partial(orphan_rows, foreign_key=foreign_key))
      for foreign_key in FOREIGN_KEYS],
    QualityCheck(_spec(TOTALS_CHECK, "trip_options",
                       "Pricings add up to total_amount in its currency; tax lines add up to tax_amount."),
                 unreconciled_totals),
    # A zero fare is suspicious, not proof of a broken table: it warns.
    QualityCheck(_spec(FARES_CHECK, "trip_options", "Options of successful searches have a positive total_amount."),
                 non_positive_fares, AssetCheckSeverity.WARN),
)


def checked_landing_hours(context: AssetCheckExecutionContext) -> list[str] | None:
    """The landing hours of the run's partition (or range); None, meaning all, when run unpartitioned."""
    if not (context.has_partition_key or context.has_partition_key_range):
        return None
    return [landing_hour_of_partition(key) for key in context.partition_keys]


# One op for every rule, so they share one Spark session; it runs only the checks a run selects.
@multi_asset_check(specs=[check.spec for check in QUALITY_CHECKS], can_subset=True, compute_kind="spark",
                   description="Keys, references, totals and fares of the curated tables.")
def curated_table_quality(context: AssetCheckExecutionContext, pyspark: PySparkResource,
                          lake: LakeResource) -> Iterator[AssetCheckResult]:
    spark, hours = pyspark.spark_session, checked_landing_hours(context)
    for check in QUALITY_CHECKS:
        if check.spec.key not in context.selected_asset_check_keys:
            continue
        result = check.rule(spark, lake.root, hours=hours)
        yield AssetCheckResult(
            asset_key=check.spec.asset_key, check_name=check.spec.name, passed=result.passed,
            severity=check.severity,
            metadata={"failing": result.failing, "examples": MetadataValue.json(list(result.examples)),
                      "landing_hours": ", ".join(hours) if hours else "all"},
        )


quality_checks = [curated_table_quality]
