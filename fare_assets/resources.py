"""Resources: what the assets talk to, one set per deployment (FARES_ENV)."""
import os
import shutil
import tempfile
from abc import abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import psycopg
from dagster import ConfigurableResource, EnvVar, InitResourceContext
from dagster_aws.s3 import S3Resource
from dagster_pyspark import PySparkResource

from fare_assets.settings import env_or_default, load_settings
from fare_assets.storing.lake import is_partial_object, partial_object_path
from fare_assets.storing.postgres import SUPERUSER, WAREHOUSE_DB
from fare_assets.storing.warehouse import checked_dsn
from fare_assets.streaming.amadeus_client import amadeus_client_from_env
from fare_assets.streaming.delivery import LocalDeliveryStream
from fare_assets.streaming.duffel_client import duffel_client_from_env
from fare_assets.streaming.firehose import FirehoseDeliveryStream, FirehoseTarget
from fare_assets.streaming.providers import ProviderClients
from fare_assets.streaming.qpx_client import QpxClient, qpx_rate_limit
from fare_assets.streaming.watchlist import Watchlist, load_watchlist
from fare_assets.structuring.emr import LocalSparkRunner, spark_runner_from_env
from fare_assets.structuring.spark import local_spark_conf


UNTHROTTLED_CALLS_PER_SECOND = 1000.0


class FareSourceResource(ConfigurableResource):
    """The fare APIs to collect from and the watchlist that says what to ask them.

    `base_url` is the QPX-protocol endpoint; Duffel and Amadeus read their URLs and credentials from
    FARES_DUFFEL_* and FARES_AMADEUS_* (README "Real fare providers").
    """

    base_url: str
    watchlist_path: str
    solutions: int = 8
    concurrency: int = 4
    # Calls per second across a run's calls; None reads FARES_QPX_RATE_PER_SECOND / _RATE_BURST.
    rate_per_second: float | None = None

    def client(self, providers: Iterable[str]) -> ProviderClients:
        """A client per provider named (each with its own rate limit); a missing credential fails here, before any call."""
        builders = {
            "qpx": lambda: QpxClient(self.base_url, solutions=self.solutions,
                                     rate_limiter=qpx_rate_limit(self.rate_per_second)),
            "duffel": duffel_client_from_env,
            "amadeus": amadeus_client_from_env,
        }
        return ProviderClients({name: builders[name]() for name in sorted(providers)})

    def watchlist(self) -> Watchlist:
        return load_watchlist(Path(self.watchlist_path))


def _folder_prefix(prefix: str) -> str:
    """`prefix` when it names a folder below the root; on S3 "run-1" would also match "run-10/"."""
    if not prefix.strip("/") or not prefix.endswith("/"):
        raise ValueError(f"{prefix!r} is not a folder prefix below the lake root (such as 'exports/warehouse/run/')")
    return prefix


class LakeStorage(ConfigurableResource):
    """Where the lake's objects are: the sensor lists keys, Spark reads the paths, wherever the lake is."""

    @abstractmethod
    def list_keys(self, prefix: str) -> list[str]:
        """Every object key under a prefix, relative to the lake root, in key order."""

    @abstractmethod
    def object_path(self, key: str) -> str:
        """The path or URL Spark reads one object from."""

    @abstractmethod
    def read_object(self, key: str) -> bytes:
        """One object's bytes; FileNotFoundError when there is none."""

    @abstractmethod
    def write_object(self, key: str, data: bytes) -> None:
        """Write one object whole: a reader sees the old bytes or the new ones, never a part."""

    @abstractmethod
    def local_copy(self, prefix: str) -> AbstractContextManager[Path]:
        """The objects under a folder prefix ("a/b/") as a local folder, for readers other than Spark (pyarrow)."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> None:
        """Delete every object under a folder prefix ("a/b/")."""

    def raw_files(self, prefix: str) -> list[str]:
        """Every object under a raw prefix as Spark-readable paths, oldest key first."""
        return [self.object_path(key) for key in self.list_keys(prefix)]


class LakeResource(LakeStorage):
    """The data lake as a local folder, in the same key layout as the S3 lake."""

    root: str

    def delivery_stream(self) -> LocalDeliveryStream:
        return LocalDeliveryStream(Path(self.root))

    def list_keys(self, prefix: str) -> list[str]:
        # Only the folder holding the prefix is walked, so listing an hour costs that hour alone.
        root = Path(self.root)
        folder = root / prefix.rpartition("/")[0]
        if not folder.is_dir():
            return []
        keys = (path.relative_to(root).as_posix() for path in folder.rglob("*") if path.is_file())
        # Other hidden names are listed: the structuring job refuses them by name rather than Spark skipping them.
        return sorted(key for key in keys if key.startswith(prefix) and not is_partial_object(key))

    def object_path(self, key: str) -> str:
        return str(Path(self.root) / key)

    def read_object(self, key: str) -> bytes:
        return (Path(self.root) / key).read_bytes()

    def write_object(self, key: str, data: bytes) -> None:
        target = Path(self.root) / key
        target.parent.mkdir(parents=True, exist_ok=True)
        # A name listings skip, until the rename makes the whole object appear at once.
        partial = partial_object_path(target)
        partial.write_bytes(data)
        os.replace(partial, target)

    @contextmanager
    def local_copy(self, prefix: str) -> Iterator[Path]:
        yield Path(self.root) / _folder_prefix(prefix)

    def delete_prefix(self, prefix: str) -> None:
        shutil.rmtree(Path(self.root) / _folder_prefix(prefix), ignore_errors=True)


class S3LakeResource(LakeStorage):
    """The data lake as an S3 bucket (the Firehose destination); Spark reads it through s3a://."""

    bucket: str
    s3: S3Resource

    @property
    def root(self) -> str:
        return f"s3a://{self.bucket}"

    def _keys(self, prefix: str) -> list[str]:
        """Every key under a prefix, folder markers included."""
        # ListObjectsV2 answers at most 1,000 keys per call: the paginator follows ContinuationToken.
        pages = self.s3.get_client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def list_keys(self, prefix: str) -> list[str]:
        # A key ending in "/" is a folder marker (console-made), not an object.
        return [key for key in self._keys(prefix) if not key.endswith("/")]

    def object_path(self, key: str) -> str:
        return f"{self.root}/{key}"

    def read_object(self, key: str) -> bytes:
        client = self.s3.get_client()
        try:
            return client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except client.exceptions.NoSuchKey as error:
            raise FileNotFoundError(f"s3://{self.bucket}/{key}") from error

    def write_object(self, key: str, data: bytes) -> None:
        self.s3.get_client().put_object(Bucket=self.bucket, Key=key, Body=data)

    @contextmanager
    def local_copy(self, prefix: str) -> Iterator[Path]:
        prefix = _folder_prefix(prefix)
        # Downloaded under FARES_HOME: the system's temporary folder is often a small tmpfs.
        home = load_settings().home
        home.mkdir(parents=True, exist_ok=True)
        client = self.s3.get_client()
        with tempfile.TemporaryDirectory(prefix="lake-copy-", dir=home) as folder:
            for key in self.list_keys(prefix):
                target = Path(folder) / key.removeprefix(prefix)
                target.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(self.bucket, key, str(target))
            yield Path(folder)

    def delete_prefix(self, prefix: str) -> None:
        client = self.s3.get_client()
        keys = self._keys(_folder_prefix(prefix))
        # DeleteObjects takes at most 1,000 keys a call, and answers the keys it could not delete.
        for start in range(0, len(keys), 1000):
            answer = client.delete_objects(Bucket=self.bucket, Delete={
                "Objects": [{"Key": key} for key in keys[start:start + 1000]], "Quiet": True})
            if answer.get("Errors"):
                failed = answer["Errors"][0]
                raise OSError(f"could not delete {len(answer['Errors'])} objects under s3://{self.bucket}/{prefix}, "
                              f"such as {failed['Key']} ({failed['Code']})")

    def delivery_stream(self) -> FirehoseDeliveryStream:
        # The spool must outlive the process: undelivered records wait there for the next sweep.
        return FirehoseDeliveryStream.from_env(load_settings().firehose_spool / FirehoseTarget.from_env().stream_name)


def s3_lake_resource() -> S3LakeResource:
    """The S3 lake in bucket FARES_S3_BUCKET (default fares-lake), AWS credentials from the environment.

    In the region the stream is created and written in (and EMR runs in, which follows the S3 client's).
    """
    target = FirehoseTarget.from_env()
    return S3LakeResource(bucket=target.bucket, s3=S3Resource(region_name=target.region))


class WarehouseResource(ConfigurableResource):
    """The PostgreSQL warehouse the fare page reads."""

    dsn: str

    def setup_for_execution(self, context: InitResourceContext) -> None:
        # Before any asset or sensor hands the DSN to psycopg, whose parse error would quote its password.
        checked_dsn(self.dsn.get_value() if isinstance(self.dsn, EnvVar) else self.dsn)

    @contextmanager
    def connect(self):
        # In a run Dagster has read an EnvVar; outside one (scripts, tests) the field still names the variable.
        dsn = self.dsn.get_value() if isinstance(self.dsn, EnvVar) else self.dsn
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            yield conn


def local_resources() -> dict:
    """Embedded defaults: the market simulator, a lake folder, local Spark, the project's PostgreSQL."""
    settings = load_settings()
    pyspark = PySparkResource(spark_config={"spark.master": "local[*]", **local_spark_conf()})
    return {
        # The embedded simulator has no quota to protect; the provider rate limit is for real APIs.
        "fare_source": FareSourceResource(base_url=settings.market_url, watchlist_path=str(settings.watchlist),
                                          rate_per_second=UNTHROTTLED_CALLS_PER_SECOND),
        "lake": LakeResource(root=str(settings.lake)),
        "spark_runner": LocalSparkRunner(pyspark=pyspark),
        "warehouse_db": warehouse_resource(),
    }


def warehouse_resource() -> WarehouseResource:
    """FARES_WAREHOUSE_DSN, or the embedded cluster's warehouse database (no password)."""
    if env_or_default("FARES_WAREHOUSE_DSN", ""):
        # An EnvVar is read when a run starts and shown by name only in the Dagster UI: a DSN may hold a password.
        return WarehouseResource(dsn=EnvVar("FARES_WAREHOUSE_DSN"))
    return WarehouseResource(dsn=f"postgresql://{SUPERUSER}@127.0.0.1:{load_settings().pg_port}/{WAREHOUSE_DB}")


def aws_resources() -> dict:
    """AWS: the collector delivers through Kinesis Firehose into the S3 lake the sensor watches.

    The fare source is still FARES_MARKET_URL; PostgreSQL is FARES_WAREHOUSE_DSN. The Spark jobs
    (structuring, the quality checks, the warehouse export) run on EMR when FARES_SPARK_RUNNER=emr,
    otherwise in local Spark, which reads s3a:// only with the hadoop-aws jars on its classpath.
    """
    settings = load_settings()
    lake = s3_lake_resource()
    pyspark = PySparkResource(spark_config={"spark.master": "local[*]", **local_spark_conf()})
    return {
        "fare_source": FareSourceResource(base_url=settings.market_url, watchlist_path=str(settings.watchlist)),
        "lake": lake,
        "spark_runner": spark_runner_from_env(pyspark, lake.bucket, lake.s3),
        "warehouse_db": warehouse_resource(),
    }


RESOURCE_SETS = {"local": local_resources, "aws": aws_resources}


def resources_for_env() -> dict:
    """The resource set of the deployment named by FARES_ENV."""
    env = load_settings().env
    if env not in RESOURCE_SETS:
        raise ValueError(f"FARES_ENV={env!r}: choose one of {', '.join(RESOURCE_SETS)}")
    return RESOURCE_SETS[env]()
