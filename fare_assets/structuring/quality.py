"""Data-quality rules over the curated 3NF tables (keys, references, totals, fares) as pure Spark."""
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from fare_assets.structuring.providers import PROVIDERS
from fare_assets.structuring.tables import DIMENSION_SCHEMAS, FACT_KEYS, PARTITION_COLUMNS, TABLE_SCHEMAS, read_table

WHOLE_OFFER_PROVIDERS = [name for name, provider in PROVIDERS.items() if not provider.PRICES_EACH_PASSENGER]

# Every rule reads the tables of some landing hours (None: all). A search redelivered in two landing
# hours is stored in both (see serving._DELIVERY), so a fact key is unique within its landing hour and
# a fact row's parent is the one in its own partition folder. Dimensions are keyed by `code` alone.

# Offending keys a result carries for a person to look up; the count says how many there are.
EXAMPLE_LIMIT = 5


@dataclass(frozen=True)
class RuleResult:
    """How many rows break a rule, and a few of them (as column -> text) to look up."""

    failing: int
    examples: tuple[dict[str, str], ...]

    @property
    def passed(self) -> bool:
        return self.failing == 0


@dataclass(frozen=True)
class ForeignKey:
    """Rows of `child` whose `columns` must name a row of `parent` (by `parent_columns`, default the same)."""

    child: str
    columns: tuple[str, ...]
    parent: str
    parent_columns: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{'_'.join(self.columns)}_in_{self.parent}"

    @property
    def referenced(self) -> tuple[str, ...]:
        return self.parent_columns or self.columns


_OPTION, _PRICING = ("option_id",), ("option_id", "pricing_no")

FOREIGN_KEYS: tuple[ForeignKey, ...] = (
    ForeignKey("trip_options", ("search_id",), "searches"),
    ForeignKey("pricings", _OPTION, "trip_options"),
    ForeignKey("fares", _PRICING, "pricings"),
    ForeignKey("taxes", _PRICING, "pricings"),
    ForeignKey("segment_fares", _PRICING, "pricings"),
    ForeignKey("segment_fares", ("option_id", "pricing_no", "fare_no"), "fares"),
    ForeignKey("segment_fares", ("option_id", "slice_no", "segment_no"), "segments"),
    ForeignKey("slices", _OPTION, "trip_options"),
    ForeignKey("segments", ("option_id", "slice_no"), "slices"),
    ForeignKey("legs", ("option_id", "slice_no", "segment_no"), "segments"),
    ForeignKey("segments", ("carrier",), "carriers", ("code",)),
    ForeignKey("fares", ("carrier",), "carriers", ("code",)),
    # Fares are priced city to city (LON), legs fly airport to airport (LHR): each names its own dimension.
    ForeignKey("fares", ("origin_city",), "cities", ("code",)),
    ForeignKey("fares", ("destination_city",), "cities", ("code",)),
    ForeignKey("legs", ("origin",), "airports", ("code",)),
    ForeignKey("legs", ("destination",), "airports", ("code",)),
    ForeignKey("airports", ("city_code",), "cities", ("code",)),
    ForeignKey("legs", ("aircraft",), "aircraft", ("code",)),
    # tax_codes is keyed by the provider's tax id (US_002); tax_code (US, YQ) is shared by many ids.
    ForeignKey("taxes", ("tax_id",), "tax_codes", ("code",)),
)


def _result(offending: DataFrame, example_columns: list[str]) -> RuleResult:
    """Count the offending rows; fetch examples only when there are any (a passing rule costs one pass)."""
    failing = offending.count()
    if not failing:
        return RuleResult(0, ())
    rows = offending.select(*example_columns).limit(EXAMPLE_LIMIT).collect()
    return RuleResult(failing, tuple({column: str(row[column]) for column in example_columns} for row in rows))


def primary_key(table: str) -> tuple[str, ...]:
    """Columns unique within one landing hour (facts) or within the whole table (dimensions)."""
    return ("landing_hour", *FACT_KEYS[table]) if table in FACT_KEYS else ("code",)


def duplicate_keys(spark: SparkSession, lake_root: str, table: str, hours: list[str] | None = None) -> RuleResult:
    """Primary keys that occur more than once; `failing` counts the keys, examples give them with their count."""
    key = list(primary_key(table))
    repeated = (
        read_table(spark, lake_root, table, hours).groupBy(*key).agg(F.count(F.lit(1)).alias("copies"))
        .where(F.col("copies") > 1)
    )
    return _result(repeated, [*key, "copies"])


def orphan_rows(spark: SparkSession, lake_root: str, foreign_key: ForeignKey,
                hours: list[str] | None = None) -> RuleResult:
    """Child rows whose reference names no parent row; a null code is no reference to a dimension."""
    children = read_table(spark, lake_root, foreign_key.child, hours)
    renamed = [F.col(parent).alias(child) for child, parent in zip(foreign_key.columns, foreign_key.referenced)]
    if foreign_key.parent in DIMENSION_SCHEMAS:
        join_columns = list(foreign_key.columns)
        children = children.dropna(subset=list(foreign_key.columns))
    else:
        # A fact row's parent is the one of the same delivery: the same partition folder.
        join_columns = [*PARTITION_COLUMNS, *foreign_key.columns]
        renamed = [*PARTITION_COLUMNS, *renamed]
    parents = read_table(spark, lake_root, foreign_key.parent, hours).select(*renamed)
    return _result(children.join(parents, join_columns, "left_anti"), join_columns)


def unreconciled_totals(spark: SparkSession, lake_root: str, hours: list[str] | None = None) -> RuleResult:
    """Options whose pricings miss total_amount (where they give per-passenger totals) or its currency, or whose tax
    lines miss the tax_amount (both given)."""
    # Pricings and tax lines are per passenger: each counts passenger_count times.
    option = [*PARTITION_COLUMNS, "option_id"]
    pricings = read_table(spark, lake_root, "pricings", hours)
    priced = pricings.groupBy(*option).agg(
        F.sum(F.col("sale_total_per_pax") * F.col("passenger_count")).alias("priced_total"),
        F.count("sale_total_per_pax").alias("pricings_with_total"),
        F.count_distinct("sale_currency").alias("priced_currencies"),
        F.max("sale_currency").alias("priced_currency"),
    )
    taxed = (
        read_table(spark, lake_root, "taxes", hours)
        .join(pricings.select(*option, "pricing_no", "passenger_count"), [*option, "pricing_no"])
        .groupBy(*option)
        .agg(F.sum(F.col("amount") * F.col("passenger_count")).alias("taxed_total"))
    )
    providers = read_table(spark, lake_root, "searches", hours).select(*PARTITION_COLUMNS, "search_id", "provider")
    checked = (read_table(spark, lake_root, "trip_options", hours).join(priced, option, "left").join(taxed, option, "left")
               .join(providers, [*PARTITION_COLUMNS, "search_id"], "left"))
    # A provider that prices some offers only as a whole (Duffel, several passengers) gives those pricings no total
    # to add up; every other option is compared, one without any pricing or any total included.
    priced_as_a_whole = (F.col("provider").isin(*WHOLE_OFFER_PROVIDERS)
                         & F.col("pricings_with_total").eqNullSafe(F.lit(0)))
    total_missed = ~priced_as_a_whole & ~F.col("priced_total").eqNullSafe(F.col("total_amount"))
    currency_missed = (F.col("priced_currencies") > 1) | ~F.col("priced_currency").eqNullSafe(F.col("currency"))
    # Compared where both are given: Duffel (and some Amadeus offers) give a tax total without tax lines.
    tax_missed = F.col("taxed_total") != F.col("tax_amount")
    return _result(
        checked.where(total_missed | currency_missed | tax_missed),
        ["landing_hour", "option_id", "total_amount", "priced_total", "currency", "priced_currency",
         "tax_amount", "taxed_total"],
    )


def non_positive_fares(spark: SparkSession, lake_root: str, hours: list[str] | None = None) -> RuleResult:
    """Options of successful (2xx: Duffel answers 201) searches whose total_amount is missing, zero or negative."""
    searches = read_table(spark, lake_root, "searches", hours).where(F.col("status").between(200, 299))
    options = read_table(spark, lake_root, "trip_options", hours).join(
        searches.select(*PARTITION_COLUMNS, "search_id"), [*PARTITION_COLUMNS, "search_id"], "left_semi"
    )
    return _result(
        options.where(F.col("total_amount").isNull() | (F.col("total_amount") <= 0)),
        ["landing_hour", "option_id", "search_id", "total_amount"],
    )


PRIMARY_KEY_CHECK = "primary_key_unique"
TOTALS_CHECK = "totals_reconcile"
FARES_CHECK = "fares_positive"

# A rule reads the lake at a root for some landing hours (None: all).
Rule = Callable[..., RuleResult]


@dataclass(frozen=True)
class QualityRule:
    """One rule over one table, named as the Dagster check that reports it."""

    table: str
    name: str
    description: str
    evaluate: Rule
    # A failure that is suspicious rather than proof of a broken table.
    warn_only: bool = False

    @property
    def key(self) -> str:
        return f"{self.table}/{self.name}"


QUALITY_RULES: tuple[QualityRule, ...] = (
    *[QualityRule(table, PRIMARY_KEY_CHECK, f"No two rows share ({', '.join(primary_key(table))}).",
                  partial(duplicate_keys, table=table))
      for table in TABLE_SCHEMAS],
    *[QualityRule(foreign_key.child, foreign_key.name,
                  f"Every ({', '.join(foreign_key.columns)}) names a row of {foreign_key.parent}.",
                  partial(orphan_rows, foreign_key=foreign_key))
      for foreign_key in FOREIGN_KEYS],
    QualityRule("trip_options", TOTALS_CHECK,
                "Pricings add up to total_amount in its currency; tax lines add up to tax_amount.",
                unreconciled_totals),
    QualityRule("trip_options", FARES_CHECK, "Options of successful searches have a positive total_amount.",
                non_positive_fares, warn_only=True),
)
_RULES_BY_KEY = {rule.key: rule for rule in QUALITY_RULES}


def run_quality_rules(spark: SparkSession, lake_root: str, landing_hours: list[str] | None,
                      rule_keys: list[str]) -> dict[str, dict]:
    """Run the rules named by key ("table/check"); each one's failing count and examples, as plain JSON.

    Plain JSON because on EMR the result travels back to Dagster as a Pipes message.
    """
    unknown = sorted(set(rule_keys) - set(_RULES_BY_KEY))
    if unknown:
        raise ValueError(f"no quality rule named {', '.join(unknown)}")
    results = {}
    for key in rule_keys:
        result = _RULES_BY_KEY[key].evaluate(spark, lake_root, hours=landing_hours)
        results[key] = {"failing": result.failing, "examples": list(result.examples)}
    return results
