"""Configuration from environment variables, with local defaults (documented in the README)."""
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from fare_assets.synthesizing.estimators import ENGINES, SKLEARN

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MAX_RETENTION_DAYS = 36_500


def env_or_default(name: str, default: str) -> str:
    """The variable's value, or `default` when it is unset, empty or blank (an empty export means "not set")."""
    value = os.environ.get(name, "").strip()
    return value or default


# What a URL carrying a credential must be (unencrypted_remote says when it is not).
ENCRYPTED_URL_RULE = "an https URL (http only to 127.0.0.1 or localhost)"


def unencrypted_remote(url: str) -> bool:
    """Whether `url` would send what it carries (a token, a secret) unencrypted off this machine: neither https nor
    a loopback address."""
    parts = urlsplit(url)
    return parts.scheme != "https" and not (parts.scheme == "http"
                                            and parts.hostname in ("127.0.0.1", "localhost", "::1"))


def host_and_port(host: str, port: int) -> str:
    """`host:port`, with an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class Settings:
    env: str
    home: Path
    lake: Path
    firehose_spool: Path
    pg_port: int
    market_port: int
    market_url: str
    market_seed: int
    web_host: str
    web_port: int
    watchlist: Path
    sensor_lookback_hours: int
    sensor_sweep_hours: int
    sensor_settle_seconds: float
    history_days: float
    history_every_hours: float
    dagster_port: int
    model_engine: str
    warehouse_retention_days: int
    warehouse_load_attempts: int
    warehouse_retry_seconds: float
    advisor_max_upset_rate: float | None
    model_versions_kept: int

    @property
    def pg_dir(self) -> Path:
        return self.home / "pg"

    @property
    def page_url(self) -> str:
        """Where this machine reaches the fare page: its host, or the loopback when it listens on every address."""
        host = "127.0.0.1" if self.web_host in ("0.0.0.0", "::") else self.web_host
        return f"http://{host_and_port(host, self.web_port)}"


def _max_upset_rate() -> float | None:
    """FARES_ADVISOR_MAX_UPSET_RATE as a share of trips in [0, 1); unset or empty: no cap."""
    text = env_or_default("FARES_ADVISOR_MAX_UPSET_RATE", "")
    if not text:
        return None
    try:
        rate = float(text)
    except ValueError:
        rate = float("nan")
    if not 0 <= rate < 1:
        raise ValueError(f"FARES_ADVISOR_MAX_UPSET_RATE is {text!r}; set a share of trips such as 0.05 (5%), "
                         "or leave it unset for no cap")
    return rate


def load_settings() -> Settings:
    """Read the settings from the environment each time, so tests can point them elsewhere."""
    home = Path(env_or_default("FARES_HOME", str(PROJECT_ROOT / ".fares")))
    market_port = int(env_or_default("FARES_MARKET_PORT", "8765"))
    model_engine = env_or_default("FARES_MODEL_ENGINE", SKLEARN)
    retention_days = int(env_or_default("FARES_WAREHOUSE_RETENTION_DAYS", "730"))
    # A negative horizon would lie after the newest collection and drop the whole warehouse.
    if not 0 <= retention_days <= MAX_RETENTION_DAYS:
        raise ValueError(f"FARES_WAREHOUSE_RETENTION_DAYS is {retention_days}; set 0 (keep everything) or "
                         f"a number of days up to {MAX_RETENTION_DAYS}")
    load_attempts = int(env_or_default("FARES_WAREHOUSE_LOAD_ATTEMPTS", "4"))
    retry_seconds = float(env_or_default("FARES_WAREHOUSE_RETRY_SECONDS", "15"))
    if load_attempts < 1 or not 0 <= retry_seconds <= 3600:
        raise ValueError(f"FARES_WAREHOUSE_LOAD_ATTEMPTS is {load_attempts} and FARES_WAREHOUSE_RETRY_SECONDS "
                         f"{retry_seconds}; set at least 1 attempt and a wait from 0 to 3600 seconds")
    # Longer than Firehose's buffer interval (300 s, `aws_setup.BUFFERING_HINTS`): a sweep's objects land up to
    # that far apart, and an hour requested between two of them would be structured twice.
    settle_seconds = float(env_or_default("FARES_SENSOR_SETTLE_SECONDS", "360"))
    if not 0 <= settle_seconds <= 3600:
        raise ValueError(f"FARES_SENSOR_SETTLE_SECONDS is {settle_seconds}; set from 0 (request at once) to 3600")
    # A month of daily retrains: enough to compare and roll back; each version is a model, its metrics and charts.
    versions_kept = int(env_or_default("FARES_MODEL_VERSIONS_KEPT", "30"))
    if versions_kept < 0:
        raise ValueError(f"FARES_MODEL_VERSIONS_KEPT is {versions_kept}; set 0 (keep every version) or how many of "
                         "each model's newest versions to keep")
    if model_engine not in ENGINES:
        raise ValueError(f"FARES_MODEL_ENGINE is {model_engine!r}; set it to one of {', '.join(ENGINES)}")
    return Settings(
        env=env_or_default("FARES_ENV", "local"),
        home=home,
        lake=Path(env_or_default("FARES_LAKE", str(home / "lake"))),
        # Records neither Firehose nor S3 took wait here for the next run: a collection in a per-run container must
        # point it at storage every run mounts, or the container takes them with it when it ends.
        firehose_spool=Path(env_or_default("FARES_SPOOL_DIR", str(home / "spool"))),
        pg_port=int(env_or_default("FARES_PG_PORT", "54329")),
        market_port=market_port,
        market_url=env_or_default("FARES_MARKET_URL", f"http://127.0.0.1:{market_port}"),
        market_seed=int(env_or_default("FARES_MARKET_SEED", "7")),
        web_host=env_or_default("FARES_WEB_HOST", "127.0.0.1"),
        web_port=int(env_or_default("FARES_WEB_PORT", "5000")),
        watchlist=Path(env_or_default("FARES_WATCHLIST", str(PROJECT_ROOT / "fare_assets" / "watchlist.yaml"))),
        sensor_lookback_hours=int(env_or_default("FARES_SENSOR_LOOKBACK_HOURS", "2")),
        sensor_sweep_hours=int(env_or_default("FARES_SENSOR_SWEEP_HOURS", "26")),
        sensor_settle_seconds=settle_seconds,
        # About two watch horizons (63 days): the later departed trips were followed from the horizon's start, as
        # a traveller's are, and validation holds enough of them. With 60 days the advisor's check failed on some end
        # dates by a fraction of a percent, so a first `make run` published no advisor (README, "A first `make run`
        # publishes an advisor").
        history_days=float(env_or_default("FARES_HISTORY_DAYS", "120")),
        history_every_hours=float(env_or_default("FARES_HISTORY_EVERY_HOURS", "24")),
        dagster_port=int(env_or_default("FARES_DAGSTER_PORT", "3000")),
        model_engine=model_engine,
        warehouse_retention_days=retention_days,
        warehouse_load_attempts=load_attempts,
        warehouse_retry_seconds=retry_seconds,
        advisor_max_upset_rate=_max_upset_rate(),
        model_versions_kept=versions_kept,
    )
