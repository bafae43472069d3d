"""Property-based: whatever a client sends to the submit endpoint, the answer is a JSON 201 or 400."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs.models import Job
from jobs.tests.helpers import visit

pytestmark = pytest.mark.django_db

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
url = st.one_of(st.just("https://img.example.com/a.jpg"), st.text(max_size=40), st.integers(), st.none())
visits = st.fixed_dictionaries(
    {"store_id": st.one_of(st.just("S1"), st.text(max_size=70), json_values)},
    optional={
        "image_url": st.one_of(st.lists(url, max_size=3), json_values),
        "visit_time": st.one_of(st.just("2024-01-21T16:23:40Z"), st.text(max_size=30), st.integers()),
    },
)
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {}, optional={"count": st.one_of(st.integers(-1, 4), json_values), "visits": st.lists(visits, max_size=3)}
    ),
)
relaxed = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@relaxed
@given(body=bodies)
def test_any_json_body_gets_201_or_a_400_with_an_error(client, body):
    response = client.post("/api/submit/", json.dumps(body), content_type="application/json")

    assert response["Content-Type"] == "application/json"
    if response.status_code == 201:
        assert Job.objects.filter(pk=response.json()["job_id"]).exists()
    else:
        assert response.status_code == 400
        assert isinstance(response.json()["error"], str)
        assert response.json()["error"]


@relaxed
@given(raw=st.binary(max_size=200))
def test_any_bytes_get_a_json_400(client, raw):
    response = client.generic("POST", "/api/submit/", raw, content_type="application/json")
    assert response.status_code == 400
    assert "error" in response.json()


@relaxed
@given(time_text=st.text(max_size=40))
def test_any_visit_time_text_is_accepted_or_named(client, time_text):
    response = client.post(
        "/api/submit/",
        {"count": 1, "visits": [visit("S1", "https://img.example.com/a.jpg", visit_time=time_text)]},
        content_type="application/json",
    )
    assert response.status_code in (201, 400)
    if response.status_code == 400:
        assert response.json()["error"].startswith("visits[0].visit_time: ")
