"""The OpenAPI schema tells the truth: schemathesis generates requests from it for every operation and
checks each answer against it (status codes, error bodies, content types), against the real server.

The schema is built from the app's routes in this process (what the server serves, checked below), so
that schemathesis can parametrize at collection time, before the session's server is up.
"""

import schemathesis
from hypothesis import HealthCheck, settings

from graphs.api.http_app import api
from graphs.app import build_app  # noqa: F401  (registers every route on the app)
from tests.integration.conftest import Server

schema = schemathesis.openapi.from_dict(api.openapi())


def test_the_server_serves_this_schema(server: Server):
    assert server.http.get("/openapi.json").json() == api.openapi()


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_its_schema_says(case, server: Server):
    case.call_and_validate(base_url=server.url, headers=dict(server.http.headers), timeout=60)
