"""Schemathesis against the gateway's own OpenAPI schema, over HTTP to uvicorn on a real
port (with_broker=False), authenticated with a real token.

Asserted for every operation and every generated request (20 examples each):
- no 5xx (not_a_server_error);
- the status code is one the schema documents (status_code_conformance);
- the response body matches the documented model (response_schema_conformance) and its
  content type is the documented one (content_type_conformance).

Every operation is exercised, the upload and the SSE stream included: generated ids never
name an existing session, so the stream answers 404 instead of streaming forever, and
generated uploads are validated like any other bad upload.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings as hsettings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from shared.settings import Settings
from services.gateway.main import create_app
from tests.integration.test_gateway_authz import LiveGateway, add_patient, add_session, add_therapist


@pytest.fixture(scope="module")
def live(settings):
    with LiveGateway(settings, upload_rate_per_minute=100000, login_rate_per_minute=100000,
                     upload_max_bytes=5_000_000) as gw:
        therapist = gw.call(add_therapist(gw))
        patient = gw.call(add_patient(gw, therapist, "Schema Patient"))
        gw.call(add_session(gw, therapist, patient))
        gw.therapist, gw.admin = therapist, gw.call(add_therapist(gw, role="admin"))
        yield gw


@pytest.fixture(scope="module")
def api_schema(live):
    return schemathesis.openapi.from_url(f"{live.url}/openapi.json")


# One test per operation, listed from the app's own schema at collection time.
_DOC = create_app(Settings(env="development"), with_broker=False).openapi()
OPERATIONS = [(method.upper(), path) for path, ops in _DOC["paths"].items() for method in ops]


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_no_server_errors_and_schema_conformance(api_schema, live, method, path):
    operation = api_schema[path][method]

    @given(case=operation.as_strategy())
    @hsettings(max_examples=20, deadline=None, derandomize=True, database=None,
               suppress_health_check=list(HealthCheck))
    def run(case):
        case.call_and_validate(
            # a fresh sign-in per example (a generated logout ends one); admins for admin routes
            base_url=live.url, headers={"Authorization": f"Bearer {live.token(live.admin if '/admin/' in path else live.therapist)}"},
            timeout=15,
            checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                    response_schema_conformance],
        )

    run()


def test_openapi_documents_errors_on_every_operation(live):
    """Every operation documents its error model; authenticated ones document 401."""
    import httpx

    doc = httpx.get(f"{live.url}/openapi.json").json()
    missing = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            codes = set(op["responses"])
            errors = {c for c in codes if c.startswith(("4", "5"))}
            if not errors and path != "/healthz":
                missing.append((method, path, "no error response"))
            if path not in ("/healthz", "/readyz", "/api/auth/token", "/api/auth/refresh") and "401" not in codes:
                missing.append((method, path, "no 401"))
            for code in errors:
                content = op["responses"][code].get("content", {})
                if "application/json" not in content:
                    missing.append((method, path, f"{code} has no JSON model"))
            ok = [c for c in codes if c.startswith("2")]
            if not ok:
                missing.append((method, path, "no success response"))
    assert not missing, missing
