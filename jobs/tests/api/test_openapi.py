"""The OpenAPI schema (drf-spectacular) describes the live API exactly: every answer below, errors
included, is validated against the schema the service serves, with openapi-core."""

import io
import json

import pytest
from django.core.exceptions import RequestDataTooBig
from django.core.management import call_command
from django.http import HttpResponse
from openapi_core import Config, OpenAPI
from openapi_core.contrib.django import DjangoOpenAPIRequest, DjangoOpenAPIResponse
from openapi_core.validation.request.exceptions import RequestValidationError
from openapi_core.validation.response.exceptions import InvalidData

from jobs import services
from jobs.models import ImageResult
from jobs.services.outcomes import Outcome
from jobs.tests.helpers import submit, visit
from stores.models import Store

pytestmark = pytest.mark.django_db

URL = "https://images.example.com/1.jpg"


@pytest.fixture
def api(client) -> OpenAPI:
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    # CSV is text: openapi-core reads only the types it knows (JSON, text/plain, forms) as text.
    config = Config(extra_media_type_deserializers={"text/csv": lambda value, **_: value.decode()})
    return OpenAPI.from_dict(response.json(), config=config)


@pytest.fixture(autouse=True)
def stores(db):
    Store.objects.bulk_create(
        [Store(store_id="S1", name="One", area_code="A1"), Store(store_id="S2", name="Two", area_code="A1")]
    )


class ContractRequest(DjangoOpenAPIRequest):
    """The request's own path, matched against the schema's paths (openapi-core would rebuild the
    path from the URL pattern, and `^api/status/?$` is documented as /api/status)."""

    path_pattern = None

    @property
    def body(self) -> bytes:
        try:
            return super().body
        except RequestDataTooBig:  # the 413 case: the body was never read
            return b""


def make_job(client, *visits) -> int:
    return submit(client, list(visits)).json()["job_id"]


def finish(job_id: int, error: str = "") -> None:
    ids = ImageResult.objects.filter(job_id=job_id, status="pending").values_list("id", flat=True)
    services.record_outcomes(job_id=job_id, outcomes=[Outcome(i, 4, 3, error) for i in ids])


def test_every_answer_of_the_api_matches_the_schema(client, api, settings):
    seen = set()

    def checked(response, status: int):
        assert response.status_code == status, response.content[:300]
        request = response.wsgi_request
        if status < 300:  # what the API takes, the schema takes too
            api.validate_request(ContractRequest(request))
        if response.streaming:
            body = b"".join(response.streaming_content)
            response = HttpResponse(body, status=status, content_type=response["Content-Type"])
        api.validate_response(ContractRequest(request), DjangoOpenAPIResponse(response))
        seen.add((request.method, request.path.rstrip("/"), status))
        return response

    # POST /api/submit
    def post(visits: list[dict]):
        return client.post("/api/submit", {"count": len(visits), "visits": visits}, "application/json")

    ongoing = checked(post([visit("S1", URL, URL + "?2"), visit("S2", URL)]), 201).json()["job_id"]
    checked(post([visit("S1", "ftp://x")]), 400)
    checked(client.generic("POST", "/api/submit", "{not json", content_type="application/json"), 400)
    key = {"Idempotency-Key": "k-1"}
    checked(
        client.post("/api/submit", {"count": 1, "visits": [visit("S1", URL)]}, "application/json", headers=key), 201
    )
    checked(
        client.post("/api/submit", {"count": 1, "visits": [visit("S1", URL)]}, "application/json", headers=key), 201
    )
    checked(
        client.post("/api/submit", {"count": 1, "visits": [visit("S2", URL)]}, "application/json", headers=key), 422
    )
    with_callback = {"count": 1, "visits": [visit("S1", URL)], "callback_url": "https://c.example.com/done"}
    checked(client.post("/api/submit", with_callback, "application/json"), 201)

    # GET /api/status: ongoing, completed, failed, unknown ({}), not an integer
    checked(client.get(f"/api/status?jobid={ongoing}"), 200)
    completed = make_job(client, visit("S1", URL))
    finish(completed)
    assert checked(client.get(f"/api/status?jobid={completed}"), 200).json()["status"] == "completed"
    failed = make_job(client, visit("S1", URL), visit("NOPE", URL))
    finish(failed, error="HTTP 404")
    assert checked(client.get(f"/api/status?jobid={failed}"), 200).json()["status"] == "failed"
    assert checked(client.get("/api/status?jobid=987654"), 400).content == b"{}"
    checked(client.get("/api/status?jobid=abc"), 400)
    checked(client.get("/api/status"), 400)

    # GET /api/jobs/<id>/ and its images
    checked(client.get(f"/api/jobs/{failed}/"), 200)
    checked(client.get(f"/api/jobs/{ongoing}/"), 200)
    checked(client.get("/api/jobs/987654/"), 404)
    page = checked(client.get(f"/api/jobs/{ongoing}/images/?page_size=2"), 200).json()
    checked(client.get(page["next"]), 200)
    checked(client.get(f"/api/jobs/{failed}/images/?status=failed&store_id=S1"), 200)
    checked(client.get(f"/api/jobs/{failed}/images/?format=csv"), 200)
    checked(client.get(f"/api/jobs/{failed}/images/?status=weird"), 400)
    checked(client.get("/api/jobs/987654/images/"), 404)

    # GET /api/visits
    finish(make_job(client, visit("S2", URL)))
    visits = checked(client.get("/api/visits?area=A1&page_size=1"), 200).json()
    assert visits["next"]
    checked(client.get(visits["next"]), 200)
    checked(client.get("/api/visits?storeid=S1&startdate=2024-01-01T00:00:00Z&enddate=2024-12-31T00:00:00Z"), 200)
    checked(client.get("/api/visits?storeid=S1&startdate=2024-01-01"), 200)
    checked(client.get("/api/visits"), 400)
    checked(client.get("/api/visits?area=NOWHERE"), 400)

    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    checked(post([visit("S1", *[f"{URL}?{n}" for n in range(20)])]), 413)

    assert {(method, path) for method, path, _ in seen} == {
        ("POST", "/api/submit"),
        ("GET", "/api/status"),
        ("GET", f"/api/jobs/{failed}"),
        ("GET", f"/api/jobs/{ongoing}"),
        ("GET", "/api/jobs/987654"),
        ("GET", f"/api/jobs/{ongoing}/images"),
        ("GET", f"/api/jobs/{failed}/images"),
        ("GET", "/api/jobs/987654/images"),
        ("GET", "/api/visits"),
    }


@pytest.mark.parametrize(
    ("path", "status", "body"),
    [
        ("/api/status?jobid=1", 200, b'{"status":"failed","job_id":1}'),  # a failed job lists its errors
        ("/api/status?jobid=1", 200, b'{"status":"completed","job_id":1,"error":[]}'),  # only a failed one does
        ("/api/status?jobid=1", 200, b'{"status":"done","job_id":1}'),
        ("/api/status?jobid=1", 400, b'{"detail":"x"}'),
        ("/api/submit", 201, b'{"job_id":"1"}'),
        ("/api/visits?storeid=S1", 200, b'{"results":[]}'),
    ],
)
def test_the_schema_refuses_answers_outside_the_contract(client, api, path, status, body):
    method = "POST" if path == "/api/submit" else "GET"
    request = client.generic(method, path, b"{}", content_type="application/json").wsgi_request
    wrong = HttpResponse(body, status=status, content_type="application/json")
    with pytest.raises(InvalidData):
        api.validate_response(ContractRequest(request), DjangoOpenAPIResponse(wrong))


def submit_body(**changes) -> dict:
    return {"count": 1, "visits": [{**visit("S1", URL), **changes}]}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/submit", submit_body(image_url=[])),
        ("POST", "/api/submit", submit_body(image_url=["ftp://img.example.com/a.jpg"])),
        ("POST", "/api/submit", submit_body(image_url=["http://img.example.com:0/a.jpg"])),
        ("POST", "/api/submit", submit_body(image_url=[URL, URL, URL])),  # over RETAILPULSE_MAX_IMAGES_PER_VISIT
        ("POST", "/api/submit", submit_body(store_id=" \u3000 ")),
        ("POST", "/api/submit", submit_body(store_id="S\u00001")),
        ("POST", "/api/submit", submit_body(visit_time="yesterday")),
        ("POST", "/api/submit", {**submit_body(), "callback_url": "0"}),
        ("POST", "/api/submit", {**submit_body(), "count": 0}),
        ("POST", "/api/submit", {"count": 1, "visits": []}),
        ("GET", "/api/status?jobid=0", None),
        ("GET", "/api/status?jobid=9223372036854775808", None),
        ("GET", "/api/status?jobid=abc", None),
        ("GET", "/api/jobs/{job}/images/?page_size=0", None),
        ("GET", "/api/jobs/{job}/images/?status=weird", None),
        ("GET", "/api/visits?storeid=S1&page_size=5001", None),
        ("GET", "/api/visits?startdate=2024-13-01", None),
        ("GET", "/api/visits?area=%20", None),
    ],
)
def test_requests_the_api_refuses_are_outside_the_schema(client, settings, method, path, body):
    settings.RETAILPULSE = {**settings.RETAILPULSE, "MAX_IMAGES_PER_VISIT": 2}
    job_id = make_job(client, visit("S1", URL))
    response = client.generic(method, path.format(job=job_id), json.dumps(body), content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    schema = OpenAPI.from_dict(client.get("/api/schema/?format=json").json())  # served with these settings
    with pytest.raises(RequestValidationError):
        schema.validate_request(ContractRequest(response.wsgi_request))


def test_every_optional_query_parameter_may_be_sent_empty(client):
    """The API reads `?page_size=` as no page size (test_api_images.py), and the schema says so (openapi-core
    casts an empty value all the same, so the requests above cannot show it)."""
    schema = client.get("/api/schema/?format=json").json()
    query = [
        p for item in schema["paths"].values() for op in item.values() for p in op["parameters"] if p["in"] == "query"
    ]
    assert len(query) == 12
    assert all(p.get("allowEmptyValue", False) is not p.get("required", False) for p in query)


def test_an_image_url_is_shown_as_submitted_not_as_an_rfc_3986_uri(client):
    """The submit takes http(s) URLs that RFC 3986 does not (`https://bücher.example/[1].jpg`)."""
    schema = client.get("/api/schema/?format=json").json()
    assert schema["components"]["schemas"]["ImageResult"]["properties"]["url"] == {"type": "string"}


def test_the_schema_requires_a_token_on_every_operation_when_tokens_are_on(client, settings):
    settings.RETAILPULSE = {**settings.RETAILPULSE, "API_TOKENS": True}
    schema = client.get("/api/schema/?format=json").json()
    operations = [operation for path_item in schema["paths"].values() for operation in path_item.values()]
    assert len(operations) == 5
    assert all(operation["security"] == [{"tokenAuth": []}] for operation in operations)
    assert schema["components"]["securitySchemes"]["tokenAuth"]["name"] == "Authorization"


def test_the_schema_has_no_security_when_tokens_are_off(client, settings):
    """Swagger UI draws a lock on every operation that has a security scheme; with tokens off no
    token is read, so there is none."""
    settings.RETAILPULSE = {**settings.RETAILPULSE, "API_TOKENS": False}
    schema = client.get("/api/schema/?format=json").json()
    operations = [operation for path_item in schema["paths"].values() for operation in path_item.values()]
    assert len(operations) == 5
    assert [operation["operationId"] for operation in operations if "security" in operation] == []
    assert "securitySchemes" not in schema.get("components", {})
    assert "security" not in schema


def test_the_schema_is_valid_and_generates_without_warnings(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    text = (tmp_path / "schema.yaml").read_text()
    assert text.startswith("openapi: 3.0.3")
    for path in ("/api/submit:", "/api/status:", "/api/visits:", "/api/jobs/{job_id}/:", "/api/jobs/{job_id}/images/:"):
        assert f"\n  {path}\n" in text


def test_the_schema_is_also_served_as_yaml(client):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi")
    assert response.content.startswith(b"openapi: 3.0.3")


def test_swagger_ui_is_served_from_here_without_a_cdn(client):
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower()
    assert "/api/schema/" in html
    bundle = client.get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
    assert bundle.status_code == 200
    assert b"SwaggerUIBundle" in b"".join(bundle.streaming_content)


def test_the_command_line_can_print_the_schema():
    out = io.StringIO()
    call_command("spectacular", "--format", "openapi-json", stdout=out)
    assert '"/api/status"' in out.getvalue()
