"""Charts of the advisor's and the fare model's held-out evaluation, as PNG bytes and as markdown images.

No Dagster here: the asset shows these in its metadata and keeps them beside each model version.
"""
import base64
import io

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, NullFormatter, PercentFormatter, StrMethodFormatter
from sklearn.inspection import permutation_importance

from fare_assets.synthesizing.advisor import relative_savings
from fare_assets.synthesizing.evaluation import IMPORTANCE_MAX_ROWS, EvaluationResult, importance_sample
from fare_assets.synthesizing.fare_model import CHARTED_TEST_ROWS, FareModelEvaluation, log_fare_per_passenger
from fare_assets.synthesizing.features import MEANINGFUL_DROP_SHARE

# 480 x 280 px: readable in the Dagster UI's metadata pane at a few tens of KB per chart.
FIGURE_SIZE_INCHES = (6.0, 3.5)
DPI = 80

SAVINGS_BINS = 30
TOP_FEATURES = 12
IMPORTANCE_REPEATS = 2


def _figure() -> tuple[Figure, Axes]:
    """A figure outside pyplot (no global state, safe in any thread) drawn by the Agg backend."""
    figure = Figure(figsize=FIGURE_SIZE_INCHES, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _png(figure: Figure) -> bytes:
    """The figure rendered as PNG at its own size and resolution."""
    buffer = io.BytesIO()
    figure.canvas.print_png(buffer)
    return buffer.getvalue()


def markdown_image(png: bytes, title: str) -> str:
    """The PNG inlined as a markdown image (a base64 data URI), as Dagster's markdown metadata renders it."""
    return f"![{title}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


def savings_distribution_png(advisor_outcomes: pd.DataFrame, oracle_outcomes: pd.DataFrame) -> bytes:
    """Histogram of each test trip's saving against buying at the first observation, as a share of that fare:
    the advisor beside the oracle that buys at the trip's lowest fare."""
    savings = {"advisor": relative_savings(advisor_outcomes), "oracle": relative_savings(oracle_outcomes)}
    edges = np.histogram_bin_edges(pd.concat(savings.values()), bins=SAVINGS_BINS)
    figure, axes = _figure()
    for (name, saving), color in zip(savings.items(), ("tab:blue", "tab:gray")):
        axes.hist(saving, bins=edges, color=color, alpha=0.55, label=f"{name} (mean {saving.mean():.1%})")
        axes.axvline(saving.mean(), color=color, linestyle="--", linewidth=1)
    axes.axvline(0, color="black", linewidth=0.8)
    axes.xaxis.set_major_formatter(PercentFormatter(1.0))
    axes.set_xlabel("saving vs buying at the first observation (share of that fare; < 0: paid more)")
    axes.set_ylabel("test trips")
    axes.set_title(f"Savings on {len(advisor_outcomes):,} held-out trips")
    axes.legend()
    return _png(figure)


def calibration_png(bins: pd.DataFrame) -> bytes:
    """Reliability curve: observed drop rate against mean predicted probability per bin, rows per bin as bars."""
    figure, axes = _figure()
    counts = axes.twinx()
    bars = counts.bar(bins["bin_from"], bins["rows"], width=bins["bin_to"] - bins["bin_from"], align="edge",
                      color="lightgray", edgecolor="white")
    counts.bar_label(bars, labels=[f"{rows:,}" for rows in bins["rows"]], fontsize=7, color="dimgray")
    counts.set_ylabel("test rows per bin")
    # The curve goes over the bars: its axes draw last, with a see-through background.
    axes.set_zorder(counts.get_zorder() + 1)
    axes.patch.set_visible(False)
    axes.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=0.8, label="perfectly calibrated")
    axes.plot(bins["mean_probability"], bins["observed_rate"], marker="o", color="tab:blue", label="advisor")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.xaxis.set_major_formatter(PercentFormatter(1.0))
    axes.yaxis.set_major_formatter(PercentFormatter(1.0))
    axes.set_xlabel(f"predicted P(fare drops {MEANINGFUL_DROP_SHARE:.0%}+ before departure)")
    axes.set_ylabel("observed share that dropped")
    axes.set_title(f"Calibration on {int(bins['rows'].sum()):,} held-out observations")
    axes.legend(loc="upper center")
    return _png(figure)


def permutation_importances(model, inputs: pd.DataFrame, target: np.ndarray, scoring: str,
                            max_rows: int = IMPORTANCE_MAX_ROWS, repeats: int = IMPORTANCE_REPEATS,
                            random_state: int = 0) -> pd.Series:
    """Mean loss of `scoring` when each input column is shuffled, on at most `max_rows` sampled rows; largest first."""
    inputs, target = importance_sample(inputs, target, max_rows, random_state)
    result = permutation_importance(model, inputs, target, scoring=scoring, n_repeats=repeats, random_state=random_state)
    return pd.Series(result.importances_mean, index=inputs.columns).sort_values(ascending=False)


def feature_importance_png(importances: pd.Series, title: str, xlabel: str) -> bytes:
    """The most important inputs as horizontal bars, the largest on top (importances as a share)."""
    top = importances.sort_values(ascending=False).head(TOP_FEATURES).iloc[::-1]
    figure, axes = _figure()
    axes.barh(top.index, top.to_numpy(), color="tab:blue")
    axes.axvline(0, color="black", linewidth=0.8)
    axes.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=1))
    axes.tick_params(axis="y", labelsize=8)
    axes.set_xlabel(xlabel)
    axes.set_title(title)
    return _png(figure)


def predicted_vs_actual_png(actual: np.ndarray, predicted: np.ndarray) -> bytes:
    """Predicted against actual cheapest totals on held-out rows (log axes, at most CHARTED_TEST_ROWS), with the diagonal."""
    actual, predicted = np.asarray(actual, dtype=float), np.asarray(predicted, dtype=float)
    mape = float(np.mean(np.abs(predicted - actual) / actual))
    shown = np.arange(len(actual))
    if len(shown) > CHARTED_TEST_ROWS:
        shown = np.random.default_rng(0).choice(shown, CHARTED_TEST_ROWS, replace=False)
    figure, axes = _figure()
    axes.scatter(actual[shown], predicted[shown], s=4, alpha=0.3, color="tab:blue", linewidths=0)
    low, high = min(actual.min(), predicted.min()), max(actual.max(), predicted.max())
    axes.plot([low, high], [low, high], color="black", linestyle="--", linewidth=0.8)
    axes.set_xscale("log")
    axes.set_yscale("log")
    for axis in (axes.xaxis, axes.yaxis):
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
        axis.set_minor_formatter(NullFormatter())
    axes.set_xlabel("actual cheapest total")
    axes.set_ylabel("predicted")
    axes.set_title(f"Fare model on {len(actual):,} held-out collections: MAPE {mape:.1%}")
    return _png(figure)


def advisor_charts(evaluation: EvaluationResult) -> dict[str, bytes]:
    """The advisor's held-out charts: savings_distribution, calibration and feature_importance."""
    judgement = evaluation.judgement
    # The waiting model, not the drop classifier, decides buy or wait; its error is a share of the fare now.
    importances = permutation_importances(evaluation.advisor.waiting_model, judgement.waiting_inputs,
                                          judgement.waiting_paid_ratio, "neg_mean_absolute_error")
    return {
        "savings_distribution": savings_distribution_png(judgement.outcomes["advisor"], judgement.outcomes["oracle"]),
        "calibration": calibration_png(judgement.calibration),
        "feature_importance": feature_importance_png(
            importances, "Fare-if-waiting model: permutation importance",
            "rise in mean abs. error of fare paid by waiting / fare now"),
    }


def fare_model_charts(evaluation: FareModelEvaluation) -> dict[str, bytes]:
    """The fare model's held-out charts: predicted_vs_actual and feature_importance."""
    rows, model = evaluation.test_rows, evaluation.model
    inputs = model.design_matrix(rows)
    # The regressor works on log fares: a rise in their absolute error is roughly a share of the fare.
    importances = permutation_importances(model.regressor, inputs,
                                          log_fare_per_passenger(rows["cheapest_total"], inputs["passengers"]),
                                          "neg_mean_absolute_error")
    return {
        "predicted_vs_actual": predicted_vs_actual_png(rows["cheapest_total"], evaluation.predicted),
        "feature_importance": feature_importance_png(
            importances, "Fare model: permutation importance",
            "rise in mean abs. error of log fare (about a share of it)"),
    }
