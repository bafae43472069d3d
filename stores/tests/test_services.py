"""Tests of the store master loader: the real files, accepted variants of the format, and bad files."""

import csv
import io

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conftest import SHARED_DATA
from stores.models import Store
from stores.services import LoadReport, StoreMasterError, load_store_master, parse_store_master

HEADER = "AreaCode,StoreName,StoreID\n"


def load(data: str | bytes) -> LoadReport:
    return load_store_master(io.BytesIO(data.encode() if isinstance(data, str) else data))


def load_file(filename: str) -> LoadReport:
    with (SHARED_DATA / filename).open("rb") as f:
        return load_store_master(f)


def stores() -> dict[str, tuple[str, str]]:
    return {s.store_id: (s.name, s.area_code) for s in Store.objects.all()}


def read_with_csv_module(filename: str) -> dict[str, tuple[str, str]]:
    with (SHARED_DATA / filename).open(newline="", encoding="utf-8") as f:
        return {row["StoreID"]: (row["StoreName"].strip(), row["AreaCode"]) for row in csv.DictReader(f)}


@pytest.mark.parametrize(
    ("filename", "named"),
    [
        ("StoreMasterAssignment.csv", {"RP00893": "A.A ENTP,", "RP00894": "AB AHAD GEN. STORE,-1"}),
        ("StoreMasterAssignment-2020.csv", {"S00339218": "BHARAT STORE", "S01408764": "Asha Communication"}),
    ],
)
def test_real_master_loads_every_store(db, filename, named):
    expected = read_with_csv_module(filename)
    assert {store_id: expected[store_id][0] for store_id in named} == named  # what the file itself says

    assert load_file(filename) == LoadReport(created=4944, updated=0, unchanged=0)

    assert stores() == expected
    assert dict(Store.objects.filter(pk__in=named).values_list("store_id", "name")) == named


def test_reloading_real_master_changes_nothing(db):
    load_file("StoreMasterAssignment.csv")
    before = stores()

    with CaptureQueriesContext(connection) as queries:
        assert load_file("StoreMasterAssignment.csv") == LoadReport(created=0, updated=0, unchanged=4944)

    assert stores() == before
    assert not [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))]


def test_changed_name_or_area_code_is_updated_and_absent_stores_are_kept(db):
    load(HEADER + "A1,One,S1\nA1,Two,S2\nA1,Three,S3\nA1,Four,S4\n")

    report = load(HEADER + "A1,One renamed,S1\nA2,Two,S2\nA1,Three,S3\nA1,Five,S5\n")

    assert report == LoadReport(created=1, updated=2, unchanged=1)
    assert stores() == {
        "S1": ("One renamed", "A1"),
        "S2": ("Two", "A2"),
        "S3": ("Three", "A1"),
        "S4": ("Four", "A1"),
        "S5": ("Five", "A1"),
    }


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"AreaCode,StoreName,StoreID\nA1,Corner Shop,S1\nA2,Kiosk,S2\n", id="as-exported"),
        pytest.param(b"area_code,store_name,store_id\nA1,Corner Shop,S1\nA2,Kiosk,S2\n", id="snake-case"),
        pytest.param(b"Store ID, Store Name , Area Code\nS1, Corner Shop ,A1\nS2,Kiosk, A2\n", id="spaced-reordered"),
        pytest.param(b"AREACODE,STORENAME,STOREID\nA1,Corner Shop,S1\nA2,Kiosk,S2\n", id="upper-case"),
        pytest.param(b"\xef\xbb\xbfAreaCode,StoreName,StoreID\nA1,Corner Shop,S1\nA2,Kiosk,S2\n", id="utf8-bom"),
        pytest.param(b"AreaCode,StoreName,StoreID\r\nA1,Corner Shop,S1\r\nA2,Kiosk,S2\r\n", id="crlf"),
        pytest.param(b"AreaCode,StoreName,StoreID\nA1,Corner Shop,S1\nA2,Kiosk,S2", id="no-final-newline"),
        pytest.param(b"AreaCode,StoreName,StoreID\r\nA1,Corner Shop,S1\r\nA2,Kiosk,S2\r\n\r\n", id="trailing-blank"),
    ],
)
def test_accepted_variants_of_the_format(db, data):
    assert load(data) == LoadReport(created=2, updated=0, unchanged=0)
    assert stores() == {"S1": ("Corner Shop", "A1"), "S2": ("Kiosk", "A2")}


@pytest.mark.parametrize(
    ("cell", "name"),
    [
        ('"A.A ENTP,"', "A.A ENTP,"),
        ('"Shop, Main Road"', "Shop, Main Road"),
        ('"Shop\nMain Road"', "Shop\nMain Road"),
        ('"The ""Best"" Shop"', 'The "Best" Shop'),
    ],
)
def test_quoted_name(db, cell, name):
    load(HEADER + f"A1,{cell},S1\nA2,Next,S2\n")
    assert stores() == {"S1": (name, "A1"), "S2": ("Next", "A2")}


def test_parse_returns_unsaved_stores_in_file_order_without_the_database():
    # No `db` fixture: pytest-django fails the test if parsing touches the database.
    parsed = parse_store_master(io.StringIO(HEADER + "A2, Second ,S2\nA1,First,S1\n", newline=""))
    assert [(s.store_id, s.name, s.area_code) for s in parsed] == [("S2", "Second", "A2"), ("S1", "First", "A1")]


@pytest.mark.parametrize(
    ("data", "problems"),
    [
        pytest.param(HEADER + "A1,Good,S1\nA1,No id,\n", ["line 3: missing store id"], id="missing-store-id"),
        pytest.param(
            HEADER + "A1,One,S1\nA1,Two,S2\nA1,Again,S1\n",
            ["line 4: duplicate store id S1 (first on line 2)"],
            id="duplicate-store-id",
        ),
        pytest.param(HEADER + "A1,Good,S1\n ,No area,S2\n", ["line 3: store S2 has no area code"], id="no-area-code"),
        pytest.param(
            HEADER + 'A1,"Two\nlines",S1\nA1,No id,\n', ["line 4: missing store id"], id="line-after-quoted-newline"
        ),
        pytest.param(
            HEADER + "A1,Good,S1\n,No area,S2\nA1,Good,S3\nA1,No id,\nA1,Again,S3\n",
            [
                "line 3: store S2 has no area code",
                "line 5: missing store id",
                "line 6: duplicate store id S3 (first on line 4)",
            ],
            id="every-problem-listed",
        ),
        pytest.param(
            "AreaCode,StoreName\nA1,Good\n",
            ["line 1: missing column(s) storeid in header ['AreaCode', 'StoreName']"],
            id="missing-column",
        ),
        pytest.param("", ["line 1: the file is empty"], id="empty-file"),
        pytest.param(
            HEADER.encode() + b"A1,Good,S1\nA1,Caf\xe9,S2\n",
            ["line 3: not UTF-8 text (invalid continuation byte at byte 44)"],
            id="not-utf8",
        ),
        pytest.param(
            HEADER.encode() + b"".join(b"A1,Good,S%05d\n" % i for i in range(2000)) + b"A1,Caf\xe9,SX\n",
            ["line 2002: not UTF-8 text (invalid continuation byte at byte 30033)"],
            id="not-utf8-far-into-the-file",
        ),
    ],
)
def test_bad_file_lists_problems_by_line_and_writes_nothing(db, data, problems):
    Store.objects.create(store_id="S1", name="Old name", area_code="A0")

    with pytest.raises(StoreMasterError) as excinfo:
        load(data)

    assert excinfo.value.problems == problems
    assert stores() == {"S1": ("Old name", "A0")}
