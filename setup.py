from setuptools import find_packages, setup

# dagster-* 0.29.27 libraries require dagster 1.13.27 exactly; unpinned, pip falls back to 2021
# releases that fail on import.
DAGSTER = "1.13.27"
DAGSTER_LIBS = "0.29.27"

setup(
    name="fare_platform",
    version="0.1.0",
    description="Flight-fare data platform: collect, lake, structure, warehouse, advise, show.",
    packages=find_packages(exclude=["fare_assets_tests", "fare_assets_tests.*"]),
    package_data={"fare_assets": ["*.yaml"], "webapp": ["templates/*.html", "static/*"]},
    python_requires=">=3.11",
    install_requires=[
        f"dagster=={DAGSTER}",
        f"dagster-webserver=={DAGSTER}",
        f"dagster-aws=={DAGSTER_LIBS}",
        f"dagster-pyspark=={DAGSTER_LIBS}",
        f"dagster-postgres=={DAGSTER_LIBS}",
        # The EMR step's entry point speaks Pipes with it.
        f"dagster-pipes=={DAGSTER}",
        "pyspark>=4.0,<5",
        # pyspark warns on pandas 3 where Spark and pandas meet.
        "pandas>=2.2,<3",
        "pyarrow>=15",
        "boto3",
        "botocore",
        "requests",
        "pyyaml",
        "numpy",
        "scikit-learn>=1.4",
        "joblib",
        # The advisor's and fare model's charts, shown in the Dagster UI and kept beside each model version.
        "matplotlib>=3.8",
        "flask>=3",
        "werkzeug",
        "markupsafe",
        # The fare page's production server: one process per core (Flask holds the GIL per request).
        "gunicorn>=23",
        "psycopg[binary]>=3.1",
        "airportsdata",
    ],
    extras_require={
        "test": [
            "pytest",
            "hypothesis",
            # The synthesizing tests run gradient boosting on one OpenMP thread (busy shared cores).
            "threadpoolctl",
            "moto[server]>=5",
            # moto's server mode needs it.
            "flask-cors",
            # The browser and API schema tests serve the app in-process.
            "waitress>=3",
            "duckdb",
            # Browser tests drive Debian's chromium; API fuzzing against /openapi.json.
            "playwright>=1.40",
            "schemathesis>=4",
        ],
    },
)
