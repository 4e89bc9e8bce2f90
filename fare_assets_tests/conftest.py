import json
from pathlib import Path

import pytest

from fare_assets.services import free_port
from fare_assets.settings import PROJECT_ROOT, env_or_default

# The providers' real responses the parsers are tested on, kept beside the project (the team's shared folder), not
# in it. Without them the tests parametrized over them would collect nothing and pass: stop instead.
FIXTURES = Path(env_or_default("FARES_FIXTURES", str(PROJECT_ROOT.parent / "shared" / "fixtures"))).resolve()
if not all((FIXTURES / provider).is_dir() for provider in ("qpx", "duffel", "amadeus")):
    raise pytest.UsageError(f"the providers' real responses are not in {FIXTURES} (qpx/, duffel/, amadeus/): "
                            "put them there, or point FARES_FIXTURES at them")


def load_fixture(relative: str) -> dict:
    return json.loads((FIXTURES / relative).read_text())


@pytest.fixture(scope="session")
def spark():
    from fare_assets.structuring.spark import local_spark_session

    session = local_spark_session("fares-tests")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    """A real PostgreSQL cluster for the test session (its own folder and port)."""
    from fare_assets.storing.postgres import EmbeddedPostgres

    cluster = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "cluster", free_port())
    cluster.start()
    yield cluster
    cluster.destroy()


@pytest.fixture
def warehouse_dsn(postgres):
    """A fresh, empty warehouse database per test; returns its superuser DSN."""
    import uuid

    import psycopg

    name = f"test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield postgres.dsn(name)
    with psycopg.connect(postgres.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def market_url():
    """The fare market simulator as a real HTTP server on a free port."""
    from fare_assets.market.server import market_in_thread

    with market_in_thread() as url:
        yield url
