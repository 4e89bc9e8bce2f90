"""Resources: what the assets talk to, one set per deployment (FARES_ENV)."""
import os
from contextlib import contextmanager
from pathlib import Path

import psycopg
from dagster import ConfigurableResource
from dagster_pyspark import PySparkResource

from fare_assets.settings import load_settings
from fare_assets.storing.postgres import SUPERUSER, WAREHOUSE_DB
from fare_assets.streaming.delivery import LocalDeliveryStream
from fare_assets.streaming.qpx_client import QpxClient
from fare_assets.streaming.watchlist import Watchlist, load_watchlist
from fare_assets.structuring.spark import SPARK_CONF


class FareSourceResource(ConfigurableResource):
    """The fare API to collect from and the watchlist that says what to ask it."""

    base_url: str
    watchlist_path: str
    solutions: int = 8
    concurrency: int = 4

    def client(self) -> QpxClient:
        return QpxClient(self.base_url, solutions=self.solutions)

    def watchlist(self) -> Watchlist:
        return load_watchlist(Path(self.watchlist_path))


class LakeResource(ConfigurableResource):
    """The data lake: a local folder (or, in aws, the bucket behind an s3a:// root)."""

    root: str
    stream_name: str = "fares-local"

    def delivery_stream(self) -> LocalDeliveryStream:
        return LocalDeliveryStream(Path(self.root), self.stream_name)

    def raw_files(self, prefix: str) -> list[str]:
        """Every object under a raw prefix, oldest key first (temp files excluded)."""
        folder = Path(self.root) / prefix
        if not folder.is_dir():
            return []
        return sorted(str(path) for path in folder.iterdir() if path.is_file() and not path.name.startswith("."))


class WarehouseResource(ConfigurableResource):
    """The PostgreSQL warehouse the fare page reads."""

    dsn: str

    @contextmanager
    def connect(self):
        with psycopg.connect(self.dsn, connect_timeout=10) as conn:
            yield conn


def local_resources() -> dict:
    """Embedded defaults: the market simulator, a lake folder, local Spark, the project's PostgreSQL."""
    settings = load_settings()
    return {
        "fare_source": FareSourceResource(base_url=settings.market_url, watchlist_path=str(settings.watchlist)),
        "lake": LakeResource(root=str(settings.lake)),
        "pyspark": PySparkResource(spark_config={"spark.master": "local[*]", **SPARK_CONF}),
        "warehouse_db": WarehouseResource(dsn=warehouse_dsn()),
    }


def warehouse_dsn() -> str:
    """FARES_WAREHOUSE_DSN, or the embedded cluster's warehouse database."""
    settings = load_settings()
    return os.environ.get("FARES_WAREHOUSE_DSN") or f"postgresql://{SUPERUSER}@127.0.0.1:{settings.pg_port}/{WAREHOUSE_DB}"


def resources_for_env() -> dict:
    """The resource set of the deployment named by FARES_ENV."""
    env = load_settings().env
    if env == "local":
        return local_resources()
    raise ValueError(f"FARES_ENV={env!r}: this build supports 'local' (the aws resource set comes with issue 3)")
