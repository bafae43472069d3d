"""Errors shared by every /api/ path: JSON bodies for wrong methods, unknown paths and formats, and
what Django refuses before any view."""

import pytest
import requests

from jobs.tests.helpers import wait_until

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("two_stores")]


def test_other_methods_get_a_json_405(client):
    response = client.get("/api/submit/")
    assert response.status_code == 405
    assert "GET" in response.json()["error"]


def test_unknown_api_path_is_a_json_404(client):
    response = client.get("/api/nothing-here")
    assert response.status_code == 404
    assert response.json() == {"error": "no such endpoint: GET /api/nothing-here"}


@pytest.mark.parametrize(
    "path",
    [
        "/api/jobs/1/images/?format=AAA",
        "/api/status?jobid=1&format=xml",
        "/api/schema/?format=x",
        "/api/docs/?format=x",
    ],
)
def test_an_unknown_format_is_a_json_404(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.json() == {"error": "Not found."}


def test_the_schema_and_docs_answer_errors_in_json(client):
    response = client.post("/api/schema/")
    assert (response.status_code, response.json()) == (405, {"error": 'Method "POST" not allowed.'})
    refused = client.get("/api/schema/", HTTP_ACCEPT="image/png")
    assert refused.status_code == 406
    assert list(refused.json()) == ["error"]
    assert client.get("/api/schema/").content.startswith(b"openapi: 3.0.3")  # the schema itself is still YAML


def test_what_django_refuses_before_a_view_is_a_json_400_under_api(client):
    response = client.get("/api/status?jobid=1", HTTP_HOST="evil.example")
    assert (response.status_code, response.json()) == (400, {"error": "bad request (DisallowedHost)"})
    too_many = client.get("/api/visits?" + "&".join(f"p{n}=1" for n in range(1001)))
    assert (too_many.status_code, too_many.json()) == (400, {"error": "bad request (TooManyFieldsSent)"})
    assert client.get("/admin/", HTTP_HOST="evil.example")["Content-Type"].startswith("text/html")


@pytest.mark.django_db(transaction=True)
def test_an_over_long_url_gets_a_json_400_from_the_served_service(start_web):
    """Through gunicorn as bin/run starts it (gunicorn.conf.py): not its HTML 414."""
    web = start_web()
    query = "&".join(f"jobid=x{n}" for n in range(900))  # about 8 KB, twice gunicorn's default line
    wait_until(
        lambda: requests.get(f"{web.url}/healthz", timeout=2).ok,
        timeout=30,
        what="the web server",
        ignore=(requests.ConnectionError,),
    )

    response = requests.get(f"{web.url}/api/status?{query}", timeout=5)

    assert response.status_code == 400
    assert response.json() == {"error": "jobid: expected an integer, got 'x899'"}
