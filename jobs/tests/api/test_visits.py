"""GET /api/visits: measured perimeters by store and visit time (the original assignment's third API)."""

from datetime import UTC, datetime

import pytest

from jobs import services
from jobs.models import ImageResult
from jobs.services.outcomes import Outcome
from stores.models import Store

pytestmark = pytest.mark.django_db


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def visits(db):
    """Three stores in two areas, an unknown store, and images done, failed and pending."""
    Store.objects.bulk_create(
        [
            Store(store_id="S1", name="One", area_code="A1"),
            Store(store_id="S2", name="Two", area_code="A1"),
            Store(store_id="S3", name="Three", area_code="A2"),
        ]
    )
    job = services.create_job(
        visits=[
            services.VisitInput("S2", ["https://i.example.com/a", "https://i.example.com/b"], at("2024-01-02 10:00")),
            services.VisitInput("S1", ["https://i.example.com/c"], at("2024-01-03 09:00")),
            services.VisitInput("S1", ["https://i.example.com/d", "https://i.example.com/e"], at("2024-01-01 08:00")),
            services.VisitInput("S3", ["https://i.example.com/f"], at("2024-02-01 00:00")),
            services.VisitInput("NOPE", ["https://i.example.com/g"], at("2024-01-02 10:00")),
        ]
    )
    sizes = {  # url -> (width, height) or an error; "e" stays pending
        "a": (10, 10),
        "b": (1, 2),
        "c": (5, 5),
        "d": "HTTP 404",
        "f": (100, 50),
    }
    outcomes = []
    for image_id, url in ImageResult.objects.filter(job=job, status="pending").values_list("id", "url"):
        size = sizes.get(url.rsplit("/", 1)[1])
        if isinstance(size, tuple):
            outcomes.append(Outcome(image_id, *size))
        elif size:
            outcomes.append(Outcome(image_id, error=size))
    services.record_outcomes(job_id=job.pk, outcomes=outcomes)
    return job


def get(client, query: str):
    return client.get(f"/api/visits?{query}")


def test_one_store_lists_its_measured_images_by_visit_time(client, visits):
    response = get(client, "storeid=S1")

    assert response.status_code == 200
    assert response.json() == {
        "results": [
            {
                "store_id": "S1",
                "area": "A1",
                "store_name": "One",
                "data": [{"date": "2024-01-03T09:00:00Z", "perimeter": 20}],
            }
        ],
        "next": None,
    }


def test_an_area_lists_its_stores_in_id_order(client, visits):
    body = get(client, "area=A1").json()

    assert body["results"] == [
        {
            "store_id": "S1",
            "area": "A1",
            "store_name": "One",
            "data": [{"date": "2024-01-03T09:00:00Z", "perimeter": 20}],
        },
        {
            "store_id": "S2",
            "area": "A1",
            "store_name": "Two",
            "data": [
                {"date": "2024-01-02T10:00:00Z", "perimeter": 40},
                {"date": "2024-01-02T10:00:00Z", "perimeter": 6},
            ],
        },
    ]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("startdate=2024-01-02T10:00:00Z", {"S1": [20], "S2": [40, 6], "S3": [300]}),  # bounds are inclusive
        ("enddate=2024-01-02T10:00:00Z", {"S2": [40, 6]}),
        ("startdate=2024-01-02T10:00:01Z&enddate=2024-01-31T00:00:00Z", {"S1": [20]}),
        ("startdate=2024-01-02T15:30:00%2B05:30&enddate=2024-01-02T15:30:00%2B05:30", {"S2": [40, 6]}),
        ("startdate=2024-01-02T15:30:00+05:30&enddate=2024-01-02T15:30:00+05:30", {"S2": [40, 6]}),  # + unencoded
        ("startdate=2024-01-02", {"S1": [20], "S2": [40, 6], "S3": [300]}),  # a date alone is midnight
        ("area=A1&startdate=2024-01-03T00:00:00Z", {"S1": [20]}),
        ("area=A2&storeid=S1", {}),
        ("storeid=S3&enddate=2024-01-31T23:59:59.999Z", {}),
    ],
)
def test_filters_combine(client, visits, query, expected):
    body = get(client, query).json()
    assert {store["store_id"]: [d["perimeter"] for d in store["data"]] for store in body["results"]} == expected


def test_failed_pending_and_unknown_store_images_never_appear(client, visits):
    body = get(client, "startdate=2000-01-01T00:00:00Z").json()
    points = [d["perimeter"] for store in body["results"] for d in store["data"]]
    assert sorted(points) == [6, 20, 40, 300]  # not d (failed), e (pending), g (unknown store)
    assert "NOPE" not in {store["store_id"] for store in body["results"]}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "give at least one of area, storeid, startdate, enddate"),
        ("page_size=5", "give at least one of area, storeid, startdate, enddate"),
        ("area=ZZ", "area: no store in area 'ZZ'"),
        ("storeid=NOPE", "storeid: store 'NOPE' is not in the store master"),
        ("startdate=yesterday", "startdate: expected an RFC 3339 date-time such as 2024-01-21T16:23:40Z"),
        ("enddate=2024-13-01T00:00:00Z", "enddate: expected an RFC 3339 date-time"),
        ("startdate=2024-02-01T00:00:00Z&enddate=2024-01-01T00:00:00Z", "enddate: is before startdate"),
        ("storeid=S1&cursor=garbage", "cursor: invalid: use the next link of the previous page as it is"),
        ("storeid=S1&page_size=0", "page_size: Ensure this value is greater than or equal to 1."),
        ("storeid=S1&page_size=5001", "page_size: Ensure this value is less than or equal to 5000."),
    ],
)
def test_bad_queries_are_a_400_naming_the_problem(client, visits, query, message):
    response = get(client, query)
    assert response.status_code == 400
    assert list(response.json()) == ["error"]
    assert response.json()["error"].startswith(message), response.json()


@pytest.fixture
def many_visits(db):
    """Two stores, 7 visits each, several at the same time (ties), 3 images per visit."""
    Store.objects.bulk_create([Store(store_id=f"P{n}", name=f"P {n}", area_code="AP") for n in (1, 2)])
    inputs = [
        services.VisitInput(
            f"P{1 + v % 2}",
            [f"https://i.example.com/{v}/{i}" for i in range(3)],
            at(f"2024-03-0{1 + v % 3} 12:00"),
        )
        for v in range(14)
    ]
    job = services.create_job(visits=inputs)
    pending = ImageResult.objects.filter(job=job).order_by("id").values_list("id", flat=True)
    services.record_outcomes(
        job_id=job.pk, outcomes=[Outcome(image_id, n, 1) for n, image_id in enumerate(pending, start=1)]
    )


@pytest.mark.parametrize("page_size", [1, 2, 5, 20, 42, 1000])
def test_pages_follow_next_links_without_gaps_or_repeats(client, many_visits, page_size):
    everything = get(client, "area=AP&page_size=1000").json()
    assert everything["next"] is None
    expected = [
        (store["store_id"], d["date"], d["perimeter"]) for store in everything["results"] for d in store["data"]
    ]
    assert len(expected) == 42

    seen, pages, url = [], 0, f"/api/visits?area=AP&page_size={page_size}"
    while url:
        body = client.get(url).json()
        assert sum(len(store["data"]) for store in body["results"]) <= page_size
        seen += [(store["store_id"], d["date"], d["perimeter"]) for store in body["results"] for d in store["data"]]
        url, pages = body["next"], pages + 1
        if url:
            assert url.startswith("http://testserver/api/visits?")
            assert "area=AP" in url
    assert seen == expected
    assert pages == -(-42 // page_size)


def test_data_is_in_store_then_visit_time_order(client, many_visits):
    body = get(client, "area=AP").json()
    assert [store["store_id"] for store in body["results"]] == ["P1", "P2"]
    for store in body["results"]:
        dates = [d["date"] for d in store["data"]]
        assert dates == sorted(dates)


def test_the_trailing_slash_is_optional_and_the_query_count_is_fixed(
    client, many_visits, django_assert_max_num_queries
):
    with django_assert_max_num_queries(3):  # area exists, store exists, the page
        response = client.get("/api/visits/?area=AP&storeid=P1&page_size=3")
    assert response.status_code == 200
    assert response.json()["next"]
