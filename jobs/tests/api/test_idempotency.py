"""The Idempotency-Key header of POST /api/submit: a retried submit gets the first one's job."""

import pytest

from jobs import services
from jobs.models import ImageResult, Job
from jobs.tests.helpers import IMAGE_URL as URL
from jobs.tests.helpers import submit, visit

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("two_stores")]


def submit_with_key(client, payload: dict, key: str):
    return client.post("/api/submit/", payload, content_type="application/json", headers={"Idempotency-Key": key})


def test_a_retried_submit_with_the_same_key_gets_the_same_job(client):
    payload = {"count": 1, "visits": [visit("SAMPLE-00001", URL, URL + "?2")]}

    first = submit_with_key(client, payload, "order-7f3a")
    again = submit_with_key(client, payload, "order-7f3a")

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.content == first.content
    assert again.json() == {"job_id": first.json()["job_id"]}
    assert again["Idempotent-Replayed"] == "true"
    assert not first.has_header("Idempotent-Replayed")
    assert Job.objects.count() == 1
    assert ImageResult.objects.count() == 2


def test_the_same_body_with_keys_reordered_is_the_same_request(client):
    submit_with_key(client, {"count": 1, "visits": [visit("SAMPLE-00001", URL)]}, "k1")
    response = submit_with_key(client, {"visits": [visit("SAMPLE-00001", URL)], "count": 1}, "k1")
    assert response.status_code == 201
    assert Job.objects.count() == 1


def test_another_key_or_no_key_creates_another_job(client):
    payload = {"count": 1, "visits": [visit("SAMPLE-00001", URL)]}
    ids = {
        submit_with_key(client, payload, "a").json()["job_id"],
        submit_with_key(client, payload, "b").json()["job_id"],
        submit(client, payload["visits"]).json()["job_id"],
        submit(client, payload["visits"]).json()["job_id"],
    }
    assert len(ids) == 4


def test_a_key_reused_with_another_body_is_a_422(client):
    job_id = submit_with_key(client, {"count": 1, "visits": [visit("SAMPLE-00001", URL)]}, "k").json()["job_id"]

    response = submit_with_key(client, {"count": 1, "visits": [visit("SAMPLE-00002", URL)]}, "k")

    assert response.status_code == 422
    assert response.json() == {"error": f"this Idempotency-Key was already used for a different body (job {job_id})"}
    assert Job.objects.count() == 1


@pytest.mark.parametrize(
    ("key", "message"),
    [("", "Idempotency-Key: must not be empty"), ("k" * 256, "Idempotency-Key: longer than 255 characters")],
)
def test_an_empty_or_too_long_key_is_a_400(client, key, message):
    response = submit_with_key(client, {"count": 1, "visits": [visit("SAMPLE-00001", URL)]}, key)
    assert (response.status_code, response.json()) == (400, {"error": message})
    assert Job.objects.count() == 0


def test_a_key_of_the_longest_length_is_kept(client):
    key = "k" * 255
    job_id = submit_with_key(client, {"count": 1, "visits": [visit("SAMPLE-00001", URL)]}, key).json()["job_id"]
    assert Job.objects.get(idempotency_key=key).pk == job_id


def test_an_invalid_body_with_a_key_is_still_a_400_and_stores_nothing(client):
    response = submit_with_key(client, {"count": 2, "visits": [visit("SAMPLE-00001", URL)]}, "k")
    assert response.status_code == 400
    assert submit_with_key(client, {"count": 1, "visits": [visit("SAMPLE-00001", URL)]}, "k").status_code == 201


@pytest.mark.django_db(transaction=True)
def test_two_submits_racing_with_one_key_create_one_job():
    """The second submit checks the key before the first commits, then its insert hits the unique key
    (it waits for the first transaction) and it returns the first one's job."""
    import threading
    import time as time_

    from django.db import connection, transaction

    from jobs.api.serializers import SubmitJobSerializer

    body = {"count": 1, "visits": [visit("SAMPLE-00001", URL)]}
    serializer = SubmitJobSerializer(data=body)
    assert serializer.is_valid()
    fingerprint = services.body_fingerprint(body=body)
    first_created, release = threading.Event(), threading.Event()
    results = {}

    def first():
        try:
            with transaction.atomic():
                results["first"] = services.create_job(
                    visits=serializer.visit_inputs(), idempotency_key="race", idempotency_fingerprint=fingerprint
                ).pk
                first_created.set()
                release.wait(10)
        finally:
            connection.close()

    def second():
        try:
            results["second"] = services.submit_job(visits=serializer.visit_inputs(), idempotency_key="race", body=body)
        finally:
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    assert first_created.wait(10)
    threads[1].start()
    time_.sleep(0.5)  # the second submit has checked the key and waits on the first transaction
    release.set()
    for thread in threads:
        thread.join(30)

    assert results["second"].replayed
    assert results["second"].job.pk == results["first"]
    assert Job.objects.count() == 1
