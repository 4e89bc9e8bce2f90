"""The gradient-boosted estimators the advisor and the fare model train: scikit-learn on one machine, Spark MLlib
for data that outgrows it.

Each engine's library is imported only when that engine builds an estimator: settings check engine names without
loading scikit-learn, and the scikit-learn engine never starts a JVM.
"""
SKLEARN = "sklearn"
SPARK = "spark"
ENGINES = (SKLEARN, SPARK)


def _check(engine: str) -> None:
    if engine not in ENGINES:
        raise ValueError(f"unknown model engine {engine!r}; choose one of {', '.join(ENGINES)}")


# MLlib's gradient boosting has no L2 penalty on leaf values: l2_regularization only reaches scikit-learn.
def gradient_boosted_regressor(engine: str, *, max_iter: int, learning_rate: float, random_state: int,
                               min_samples_leaf: int = 20, l2_regularization: float = 0.0,
                               categorical_features: list[bool] | None = None, early_stopping: bool | str = "auto"):
    """A gradient-boosted regressor of `engine` with scikit-learn's fit(X, y) / predict(X) on pandas frames."""
    _check(engine)
    if engine == SPARK:
        from fare_assets.synthesizing.spark_estimators import SparkGradientBoostingRegressor

        return SparkGradientBoostingRegressor(max_iter=max_iter, learning_rate=learning_rate,
                                              min_samples_leaf=min_samples_leaf,
                                              categorical_features=categorical_features,
                                              early_stopping=early_stopping, random_state=random_state)
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(max_iter=max_iter, learning_rate=learning_rate,
                                         min_samples_leaf=min_samples_leaf, l2_regularization=l2_regularization,
                                         categorical_features=categorical_features, early_stopping=early_stopping,
                                         random_state=random_state)


def gradient_boosted_classifier(engine: str, *, max_iter: int, learning_rate: float, random_state: int,
                                l2_regularization: float = 0.0, early_stopping: bool | str = "auto"):
    """A gradient-boosted binary classifier of `engine` with fit / predict_proba / classes_ on pandas frames."""
    _check(engine)
    if engine == SPARK:
        from fare_assets.synthesizing.spark_estimators import SparkGradientBoostingClassifier

        return SparkGradientBoostingClassifier(max_iter=max_iter, learning_rate=learning_rate,
                                               early_stopping=early_stopping, random_state=random_state)
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(max_iter=max_iter, learning_rate=learning_rate,
                                          l2_regularization=l2_regularization, early_stopping=early_stopping,
                                          random_state=random_state)


def prior_classifier():
    """The observed class frequency: the honest model when the labels hold one class only."""
    from sklearn.dummy import DummyClassifier

    return DummyClassifier(strategy="prior")
