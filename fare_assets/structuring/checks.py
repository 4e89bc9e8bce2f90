"""Dagster asset checks that run the curated tables' quality rules over the landing hours of a run."""
from collections.abc import Iterator

from dagster import (AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, Failure,
                     MetadataValue, multi_asset_check)

from fare_assets.partitions import landing_hour_of_partition, landing_hours
from fare_assets.resources import LakeStorage
from fare_assets.structuring.assets import CURATED_LAKE_POOL
from fare_assets.structuring.emr import SparkRunner
from fare_assets.structuring.quality import QUALITY_RULES, QualityRule


def _spec(rule: QualityRule) -> AssetCheckSpec:
    # Partitioned like the tables, so a check run with them sees the landing hours they structured.
    return AssetCheckSpec(rule.name, asset=rule.table, description=rule.description, partitions_def=landing_hours)


_SPECS = [_spec(rule) for rule in QUALITY_RULES]
_RULES_BY_CHECK = {spec.key: rule for spec, rule in zip(_SPECS, QUALITY_RULES)}


def checked_landing_hours(context: AssetCheckExecutionContext) -> list[str] | None:
    """The landing hours of the run's partition (or range); None, meaning all, when run unpartitioned."""
    if not (context.has_partition_key or context.has_partition_key_range):
        return None
    return [landing_hour_of_partition(key) for key in context.partition_keys]


# One op for every rule, so they share one Spark job (one EMR cluster); it runs only the checks a run selects.
@multi_asset_check(specs=_SPECS, can_subset=True, compute_kind="spark", pool=CURATED_LAKE_POOL,
                   description="Keys, references, totals and fares of the curated tables.")
def curated_table_quality(context: AssetCheckExecutionContext, spark_runner: SparkRunner,
                          lake: LakeStorage) -> Iterator[AssetCheckResult]:
    hours = checked_landing_hours(context)
    selected = [rule for key, rule in _RULES_BY_CHECK.items() if key in context.selected_asset_check_keys]
    if not selected:
        return
    results = spark_runner.run_job(context.op_execution_context, "quality", lake_root=lake.root,
                                   landing_hours=hours, rule_keys=[rule.key for rule in selected])
    for rule in selected:
        result = results[rule.key]
        yield AssetCheckResult(
            asset_key=rule.table, check_name=rule.name, passed=result["failing"] == 0,
            severity=AssetCheckSeverity.WARN if rule.warn_only else AssetCheckSeverity.ERROR,
            metadata={"failing": result["failing"], "examples": MetadataValue.json(result["examples"]),
                      "landing_hours": ", ".join(hours) if hours else "all"},
        )
    failed = [f"{rule.table}/{rule.name} fails on {results[rule.key]['failing']}" for rule in selected
              if results[rule.key]["failing"] and not rule.warn_only]
    if failed:
        # The checks do not hold the load back (one orphan row would keep an hour's fares from the page), but an
        # ERROR rule that fails fails the run, so failed_run_alert tells someone; each result keeps its examples.
        raise Failure(description=f"quality checks failed for {', '.join(hours) if hours else 'every landing hour'}: "
                                  f"{'; '.join(failed)}")


quality_checks = [curated_table_quality]
