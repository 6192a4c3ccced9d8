"""The management API's OpenAPI schema: generated without a warning, listing every endpoint; the docs page
loads its assets from this server (drf-spectacular-sidecar), never from a CDN."""
import os
import re
import subprocess
import sys

import pytest
import yaml
from django.core.management import call_command

ENDPOINTS = {
    "/api/teams/{team}/keys/": {"get", "post"},
    "/api/teams/{team}/keys/{id}/": {"get", "patch", "delete"},
    "/api/teams/{team}/key-groups/": {"get", "post"},
    "/api/teams/{team}/key-groups/{id}/": {"get", "patch"},
    "/api/teams/{team}/usage/": {"get"},
    "/api/teams/{team}/usage/{id}/": {"get"},
    "/api/teams/{team}/billing/spend/": {"get"},
    "/api/teams/{team}/billing/policy/": {"get", "put"},
    "/api/teams/{team}/tickets/": {"get", "post"},
    "/api/teams/{team}/tickets/{id}/": {"get"},
    "/api/teams/{team}/tickets/{id}/replies/": {"post"},
    "/api/teams/{team}/tickets/{id}/close/": {"post"},
    "/api/teams/{team}/channels/": {"get", "post"},
    "/api/teams/{team}/channels/{id}/": {"get", "patch", "delete"},
    "/api/teams/{team}/channels/{id}/test/": {"post"},
    "/api/teams/{team}/routes/": {"get", "post"},
    "/api/teams/{team}/routes/{id}/": {"get", "put", "patch", "delete"},
    "/api/teams/{team}/routes/auto/": {"get", "put"},
    "/api/teams/{team}/routes/try/": {"post"},
    "/api/teams/{team}/model-aliases/": {"get", "post"},
    "/api/teams/{team}/model-aliases/{id}/": {"get", "put", "patch", "delete"},
    "/api/operator/imports/": {"get", "post"},
    "/api/operator/imports/preview/": {"post"},
    "/api/operator/imports/jobs/{job}/": {"get"},
    "/api/operator/imports/{code}/": {"get"},
    "/api/operator/imports/{code}/rollback/": {"post"},
    "/api/operator/redemption-batches/": {"get", "post"},
    "/api/operator/redemption-batches/{batch}/void/": {"post"},
    "/api/operator/teams/": {"post"},
    "/api/operator/teams/{team_id}/prices/": {"get", "post"},
    "/api/operator/teams/{team_id}/prices/{override_id}/": {"delete"},
    "/api/operator/teams/{team_id}/multiplier/": {"put"},
    "/api/operator/teams/{team_id}/key-groups/{group_id}/multiplier/": {"put"},
    "/api/teams/{team}/prices/": {"get"},
    "/api/operator/usage/": {"get"},
    "/api/tokens/": {"get", "post"},
    "/api/tokens/{id}/": {"delete"},
    "/api/operator/staff/": {"get", "post"},
    "/api/operator/staff/{id}/deactivate/": {"post"},
    "/api/operator/staff/{id}/reactivate/": {"post"},
}


@pytest.fixture(scope="module")
def schema(tmp_path_factory):
    path = tmp_path_factory.mktemp("schema") / "schema.yaml"
    # Fails (SchemaGenerationError) on any warning or validation error.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(path))
    return yaml.safe_load(path.read_text())


def test_schema_lists_the_endpoints(schema):
    paths = schema["paths"]
    for path, methods in ENDPOINTS.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, set(paths[path]))


def test_schema_documents_auth_and_the_error_shape(schema):
    assert schema["components"]["securitySchemes"]["personalAccessToken"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "tgp_…",
        "description": "A personal access token: `Authorization: Bearer tgp_…`"}
    forbidden = schema["paths"]["/api/teams/{team}/tickets/"]["post"]["responses"]["403"]
    assert forbidden["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOutput")


@pytest.mark.django_db
def test_schema_and_docs_are_served_to_signed_in_users_only(client):
    from tests import factories

    assert client.get("/api/schema/").status_code in (401, 403)
    assert client.get("/api/docs/").status_code in (401, 403)
    client.force_login(factories.UserFactory())
    assert client.get("/api/schema/").status_code == 200
    page = client.get("/api/docs/").content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert not re.search(r"""(src|href)=["']https?://""", page), "docs assets must not come from a CDN"


def test_the_schema_extensions_load_with_the_schema_not_at_start_up():
    """A process that builds no schema (a Celery worker, a management command) does not import drf-spectacular's
    generator machinery (~11 MB); the schema built above still has support/schema.py's security scheme."""
    code = ("import sys, django; django.setup(); "
            "print(sorted(m for m in ('support.schema', 'drf_spectacular.plumbing') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "DJANGO_SETTINGS_MODULE": "gateway_site.settings"}).stdout
    assert out.strip() == "[]"
