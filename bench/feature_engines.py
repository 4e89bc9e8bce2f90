"""The advisor's observation features on the two engines: pandas (scikit-learn engine) and Spark jobs (MLlib
engine, local[*]), on the advisor bench's default market (136,080 observations), in one run.

Both sides start from the same pandas observations and end with the same pandas feature frame (the Spark side's
time includes moving the observations in and the features out through Arrow). The run fails unless both sides
agree on every row and value (relative tolerance 1e-9). Spark's session is warmed on one route first.
"""
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from advisor_evaluation import observations  # noqa: E402
from harness import report  # noqa: E402

from fare_assets.synthesizing.estimators import SKLEARN, SPARK  # noqa: E402
from fare_assets.synthesizing.features import engine_features  # noqa: E402


def main() -> None:
    frame = observations("default")
    engine_features(frame[frame["origin"] == frame["origin"].iloc[0]], SPARK)
    rows, results = [], {}
    for name, engine in (("pandas (sklearn engine)", SKLEARN), ("spark local[*] (spark engine)", SPARK)):
        started = time.perf_counter()
        results[engine] = engine_features(frame, engine)
        seconds = time.perf_counter() - started
        rows.append({"side": name, "observations": len(frame), "features": len(results[engine].columns),
                     "seconds": seconds, "rows_per_s": len(frame) / seconds})
    pandas_side, spark_side = results[SKLEARN], results[SPARK]
    assert spark_side.index.equals(pandas_side.index), "the sides' rows are not in the same order"
    for column in ("trip_id", "collected_at", "currency"):
        assert spark_side[column].equals(pandas_side[column]), column
    numeric = [column for column in pandas_side.columns if pd.api.types.is_numeric_dtype(pandas_side[column])]
    for column in numeric:
        np.testing.assert_allclose(spark_side[column].to_numpy(dtype=float), pandas_side[column].to_numpy(dtype=float),
                                   rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=column)
    print(f"same rows in the same order; {len(numeric)} numeric columns equal on {len(frame):,} rows")
    report("feature_engines", rows, "spark rows/s over pandas rows/s",
           rows[1]["rows_per_s"] / rows[0]["rows_per_s"])


if __name__ == "__main__":
    main()
