"""schemathesis against /openapi.json on a real waitress server: generated input never causes a 5xx.

schemathesis's pytest plugin does not run under pytest 9, so the test walks the operations itself and
runs each one's hypothesis strategy.
"""
import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (content_type_conformance, not_a_server_error, response_schema_conformance,
                                 status_code_conformance)

from fare_assets.storing import warehouse
from fare_assets_tests.test_webapp import history_rows, readonly
from webapp import create_app
from fare_assets_tests.served import served


@pytest.fixture
def api_schema(warehouse_dsn):
    """The served app's own OpenAPI document, over a warehouse holding one trip's history."""
    with psycopg.connect(warehouse_dsn) as conn:
        warehouse.ensure_schema(conn)
        warehouse.load_fares(conn, history_rows(["310.00", "240.00"]))
    app = create_app({"DATABASE_DSN": readonly(warehouse_dsn)})
    with served(app) as url:
        yield schemathesis.openapi.from_url(url + "/openapi.json")


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_no_generated_request_gets_a_server_error(api_schema):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {operation.path for operation in operations} >= {
        "/api/fares", "/api/history", "/api/date-grid", "/api/advice", "/api/routes", "/api/airports",
        "/api/alerts", "/healthz"}
    statuses: list[int] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def call(case):
            statuses.append(case.call_and_validate(checks=CHECKS).status_code)

        call()
    # Hypothesis really sent requests, and both valid and invalid input reached the app.
    assert len(statuses) >= 10 * len(operations)
    assert {200, 400} <= set(statuses)
