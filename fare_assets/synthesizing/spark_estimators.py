"""Spark MLlib gradient-boosted trees behind scikit-learn's estimator surface, for data that outgrows one machine.

Callers hand in pandas frames, as to scikit-learn; fitting and predicting run as Spark jobs on frames built from
them with Arrow. pyspark is imported only when an estimator fits, predicts or loads, so importing this module
starts no JVM.
"""
import atexit
import io
import shutil
import tempfile
from abc import ABC, abstractmethod
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import NotFittedError

from fare_assets.structuring.spark import local_spark_session

# scikit-learn grows trees best-first to at most 31 leaves; MLlib grows them level by level, and depth 5 holds 32.
MAX_DEPTH = 5
# MLlib's default bins per continuous feature (scikit-learn bins into 255): every split search costs a pass per
# bin. A categorical column needs a bin per category, so the bins grow to its category count.
MAX_BINS = 32
# MLlib's trees refuse NaN features ("Vector values MUST NOT be NaN"), and Arrow brings pandas' NaN in as null,
# while scikit-learn gives missing values a bin of their own. Missingness means something here (no refiling seen
# yet, a one-way trip), so rather than imputing a typical value, a missing value becomes a number below every real
# one (ratios, logs, days, counts, km): when missing values are common a split can isolate them, as scikit-learn's
# missing bin does, but they always sit beside the lowest values instead of on whichever side suits them best.
MISSING_VALUE = -1e9
# scikit-learn's early stopping: "auto" turns it on above 10,000 rows and holds out 10% of them as validation.
EARLY_STOPPING_AUTO_ROWS = 10_000
VALIDATION_FRACTION = 0.1
# scikit-learn stops after 10 rounds without a validation loss gain of 1e-7; MLlib has no patience and stops at
# the first such round.
VALIDATION_TOL = 1e-7
# MLlib's default: the rounds between two checkpoints of the running predictions.
CHECKPOINT_INTERVAL = 10

ROW, LABEL, FEATURES, VALIDATION = "_row", "_label", "_features", "_validation"
ARROW_CONF = "spark.sql.execution.arrow.pyspark.enabled"


def model_session():
    """The active Spark session (a cluster's, under spark-submit), else a local[*] one with the project's settings."""
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession() or local_spark_session("fares-models")
    # Arrow moves pandas frames in and out of Spark column by column instead of pickling every row.
    session.conf.set(ARROW_CONF, "true")
    # Boosting adds a step to the lineage of its running predictions every round; MLlib cuts it every
    # CHECKPOINT_INTERVAL rounds, but only where a checkpoint folder is set, and without one a full-size fit (a few
    # hundred rounds) dies of a StackOverflowError. A cluster sets spark.checkpoint.dir to shared storage; one
    # machine uses a temporary folder.
    if session.sparkContext.getCheckpointDir() is None:
        folder = tempfile.mkdtemp(prefix="fares-model-checkpoints-")
        # Each training writes checkpoints of whole tables; a daily retrain in a fresh process must not pile them up.
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        session.sparkContext.setCheckpointDir(folder)
    return session


def _saved_model_bytes(model) -> bytes:
    """A fitted MLlib model as a zip of the folder its writer saves."""
    with tempfile.TemporaryDirectory() as folder:
        saved = Path(folder) / "model"
        model.write().save(saved.as_uri())
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(saved.rglob("*")):
                archive.write(path, path.relative_to(folder))
        return buffer.getvalue()


def _loaded_model(model_class, saved: bytes):
    """The MLlib model of `model_class` from _saved_model_bytes' zip (read whole into the JVM, so the folder can go)."""
    with tempfile.TemporaryDirectory() as folder:
        with zipfile.ZipFile(io.BytesIO(saved)) as archive:
            archive.extractall(folder)
        return model_class.load((Path(folder) / "model").as_uri())


class _SparkGradientBoosting(BaseEstimator, ABC):
    """What the MLlib regressor and classifier share: pandas to a Spark feature vector, fit, predict and pickling.

    Parameters mean what scikit-learn's do; categorical_features is a boolean mask over X's columns, whose values
    are category codes 0..n-1. A fitted MLlib model lives in the JVM: pickling saves it with MLlib's writer into
    bytes, and unpickling loads it back on first use, so model files hold both engines alike.
    """

    def __init__(self, max_iter: int = 100, learning_rate: float = 0.1, min_samples_leaf: int = 20,
                 max_depth: int = MAX_DEPTH, categorical_features: list[bool] | None = None,
                 early_stopping: bool | str = "auto", random_state: int = 0):
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.min_samples_leaf = min_samples_leaf
        self.max_depth = max_depth
        self.categorical_features = categorical_features
        self.early_stopping = early_stopping
        self.random_state = random_state
        self._spark_model = None
        self._saved_model = None

    @abstractmethod
    def _new_estimator(self):
        """The unfitted MLlib estimator."""

    @abstractmethod
    def _model_class(self):
        """The class of the MLlib model the estimator fits (to load a saved one)."""

    def _fit_labels(self, X: pd.DataFrame, labels: np.ndarray):
        """Fit the MLlib estimator on X's columns and numeric `labels` (0/1 for a classifier)."""
        frame = self._pandas_frame(X, labels)
        return self._fit_frame(frame, list(X.columns), LABEL, row_count=len(X))

    def _fit_frame(self, frame, feature_names: list[str], label: str, row_count: int | None = None):
        """Fit the MLlib estimator on a Spark frame's `feature_names` columns and its numeric `label` column."""
        from pyspark.sql import functions as F

        self.feature_names_in_ = np.asarray(feature_names, dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        mask = self.categorical_features or [False] * self.n_features_in_
        categorical = [column for column, is_category in zip(self.feature_names_in_, mask) if is_category]
        # MLlib wants categories as 0..n-1; the code after the largest seen stands for missing or unseen ones.
        # (Spark orders NaN above every number, so a missing value counts as -1 before the maximum is taken.)
        largest = frame.agg(*[F.max(F.nanvl(F.coalesce(F.col(column).cast("double"), F.lit(-1.0)), F.lit(-1.0)))
                              .alias(column) for column in categorical]).first() if categorical else {}
        self.category_counts_ = {column: int(largest[column]) + 2 for column in categorical}
        frame = self._assembled(frame.withColumn(LABEL, F.col(label).cast("double")), [LABEL])
        estimator = self._new_estimator().setParams(
            featuresCol=FEATURES, labelCol=LABEL, maxIter=self.max_iter, stepSize=self.learning_rate,
            minInstancesPerNode=self.min_samples_leaf, maxDepth=self.max_depth,
            maxBins=max([MAX_BINS, *self.category_counts_.values()]), checkpointInterval=CHECKPOINT_INTERVAL,
            seed=self.random_state)
        early_stopping = self.early_stopping is True or (
            self.early_stopping == "auto"
            and (row_count if row_count is not None else frame.count()) > EARLY_STOPPING_AUTO_ROWS)
        if early_stopping:
            frame = frame.withColumn(VALIDATION, F.rand(self.random_state) < VALIDATION_FRACTION)
            estimator.setParams(validationIndicatorCol=VALIDATION, validationTol=VALIDATION_TOL)
        self._spark_model = estimator.fit(frame)
        self._saved_model = None
        # As scikit-learn's n_iter_, the rounds early stopping kept (MLlib's first tree counts as one).
        self.n_iter_ = self._spark_model.getNumTrees
        return self

    def _pandas_frame(self, X: pd.DataFrame, labels: np.ndarray | None = None):
        """A Spark frame of X's columns as floats, its row numbers (ROW) and the labels (LABEL) if given."""
        data = X.astype(float)
        data[ROW] = np.arange(len(data))
        if labels is not None:
            data[LABEL] = labels
        return model_session().createDataFrame(data)

    def _assembled(self, frame, kept: list[str]):
        """The `kept` columns of a Spark frame and its training columns as one MLlib feature vector (FEATURES),
        with missing values and categories encoded."""
        from pyspark.ml.feature import VectorAssembler

        # Encoded under names of their own, so the frame's columns pass through unchanged beside them.
        encoded = [self._encoded(column).alias(f"_feature_{position}", metadata=self._metadata(column))
                   for position, column in enumerate(self.feature_names_in_)]
        names = [f"_feature_{position}" for position in range(len(encoded))]
        assembler = VectorAssembler(inputCols=names, outputCol=FEATURES)
        return assembler.transform(frame.select(*kept, *encoded)).select(*kept, FEATURES)

    def _encoded(self, column: str):
        """A feature column MLlib can split: categories as 0..n-1, numbers with missing values as MISSING_VALUE."""
        from pyspark.sql import functions as F

        value = F.col(column).cast("double")
        missing = value.isNull() | F.isnan(value)
        if column not in self.category_counts_:
            return F.when(missing, MISSING_VALUE).otherwise(value)
        other = self.category_counts_[column] - 1
        return F.when(missing | (value < 0) | (value >= other), other).otherwise(F.floor(value)).cast("double")

    def _metadata(self, column: str) -> dict:
        """A category column's nominal metadata, which the assembler carries into the vector, so trees split it as
        a set; none for a number."""
        if column not in self.category_counts_:
            return {}
        return {"ml_attr": {"type": "nominal", "num_vals": self.category_counts_[column], "name": column}}

    def _model(self):
        """The fitted MLlib model, loaded from the pickled bytes on first use after unpickling."""
        if self._spark_model is None:
            if self._saved_model is None:
                raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit() first")
            model_session()
            self._spark_model = _loaded_model(self._model_class(), self._saved_model)
        return self._spark_model

    def _predicted(self, X: pd.DataFrame, column) -> np.ndarray:
        """One output column of the fitted model on X's rows, in X's order."""
        result = self._model().transform(self._assembled(self._pandas_frame(X[list(self.feature_names_in_)]), [ROW])).select(
            ROW, column.alias("value")).toPandas()
        # Narrow transformations keep row order, but nothing promises it: rows go back by their numbers.
        ordered = np.empty(len(X))
        ordered[result[ROW].to_numpy()] = result["value"].to_numpy(dtype=float)
        return ordered

    def _with_output(self, frame, column, name: str):
        """A Spark frame with one output column of the fitted model added as `name` (its rows stay in Spark)."""
        # The model adds its own columns beside the frame's, and the frame's would shadow them.
        taken = {name, FEATURES, "prediction", "probability", "rawPrediction"} & set(frame.columns)
        if taken:
            raise ValueError(f"the frame already has column(s) {', '.join(sorted(taken))}; the model's output needs them")
        return self._model().transform(self._assembled(frame, frame.columns)).select(*frame.columns, column.alias(name))

    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())
        if self._spark_model is not None and self._saved_model is None:
            self._saved_model = _saved_model_bytes(self._spark_model)
        state["_saved_model"] = self._saved_model
        state["_spark_model"] = None
        return state


class SparkGradientBoostingRegressor(RegressorMixin, _SparkGradientBoosting):
    """MLlib GBTRegressor (squared error, like scikit-learn's default loss) with fit / predict on pandas frames."""

    def _new_estimator(self):
        from pyspark.ml.regression import GBTRegressor

        return GBTRegressor(lossType="squared")

    def _model_class(self):
        from pyspark.ml.regression import GBTRegressionModel

        return GBTRegressionModel

    def fit(self, X: pd.DataFrame, y) -> "SparkGradientBoostingRegressor":
        """Fit on X's columns and the numeric target y."""
        return self._fit_labels(X, np.asarray(y, dtype=float))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """The predicted target per row of X."""
        from pyspark.sql import functions as F

        return self._predicted(X, F.col("prediction"))

    def fit_frame(self, frame, feature_names: list[str], target: str) -> "SparkGradientBoostingRegressor":
        """Fit on a Spark frame's `feature_names` columns and its numeric `target` column, where the rows are."""
        return self._fit_frame(frame, feature_names, target)

    def with_prediction(self, frame, name: str):
        """The Spark frame with the predicted target per row added as column `name`."""
        from pyspark.sql import functions as F

        return self._with_output(frame, F.col("prediction"), name)


class SparkGradientBoostingClassifier(ClassifierMixin, _SparkGradientBoosting):
    """MLlib GBTClassifier (logistic loss, like scikit-learn's log loss) with fit / predict / predict_proba /
    classes_ on pandas frames; binary only, as MLlib's gradient boosting is."""

    def _new_estimator(self):
        from pyspark.ml.classification import GBTClassifier

        return GBTClassifier(lossType="logistic")

    def _model_class(self):
        from pyspark.ml.classification import GBTClassificationModel

        return GBTClassificationModel

    def fit(self, X: pd.DataFrame, y) -> "SparkGradientBoostingClassifier":
        """Fit on X's columns and labels y of exactly two classes."""
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) != 2:
            raise ValueError(f"MLlib gradient boosting classifies two classes; the labels hold {len(self.classes_)}")
        return self._fit_labels(X, (y == self.classes_[1]).astype(float))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Per row of X, the probability of each class in classes_ order (n x 2)."""
        from pyspark.ml.functions import vector_to_array

        second = self._predicted(X, vector_to_array("probability")[1])
        return np.column_stack([1 - second, second])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """The more probable class per row of X."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def fit_frame(self, frame, feature_names: list[str], label: str) -> "SparkGradientBoostingClassifier":
        """Fit on a Spark frame's `feature_names` columns and its boolean `label` column (both values present)."""
        self.classes_ = np.array([False, True])
        return self._fit_frame(frame, feature_names, label)

    def with_probability(self, frame, name: str):
        """The Spark frame with the probability of the second class (True) per row added as column `name`."""
        from pyspark.ml.functions import vector_to_array

        return self._with_output(frame, vector_to_array("probability")[1], name)
