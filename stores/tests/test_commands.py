"""Tests of the `load_stores` management command."""

import csv
import io
import json

import pytest
from django.core.management import CommandError, call_command

from conftest import BASE_DIR, SHARED_DATA
from stores.models import Store

HEADER = "AreaCode,StoreName,StoreID\n"


def write_csv(tmp_path, text: str):
    path = tmp_path / "stores.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_load_stores_prints_the_report(db, tmp_path):
    path = write_csv(tmp_path, HEADER + 'A1,"A.A ENTP,",S1\nA2,Kiosk,S2\nA2,Corner Shop,S3\n')
    out = io.StringIO()

    call_command("load_stores", str(path), stdout=out)

    assert "3 created, 0 updated, 0 unchanged" in out.getvalue()
    assert sorted(Store.objects.values_list("store_id", "name")) == [
        ("S1", "A.A ENTP,"),
        ("S2", "Kiosk"),
        ("S3", "Corner Shop"),
    ]


def test_bad_file_raises_command_error_and_loads_nothing(db, tmp_path):
    path = write_csv(tmp_path, HEADER + "A1,Good,S1\nA1,No id,\n")

    with pytest.raises(CommandError) as excinfo:
        call_command("load_stores", str(path))

    assert "nothing loaded" in str(excinfo.value)
    assert "line 3: missing store id" in str(excinfo.value)
    assert not Store.objects.exists()


def test_missing_path_raises_command_error(tmp_path):
    with pytest.raises(CommandError, match="cannot read"):
        call_command("load_stores", str(tmp_path / "absent.csv"))


def test_if_empty_loads_into_an_empty_master(db, tmp_path):
    path = write_csv(tmp_path, HEADER + "A1,Kiosk,S1\n")
    out = io.StringIO()

    call_command("load_stores", str(path), "--if-empty", stdout=out)

    assert "1 created, 0 updated, 0 unchanged" in out.getvalue()
    assert list(Store.objects.values_list("store_id", "name", "area_code")) == [("S1", "Kiosk", "A1")]


def test_if_empty_changes_nothing_in_an_operators_master(db, tmp_path):
    Store.objects.create(store_id="S1", name="B P STORE", area_code="7100015")
    path = write_csv(tmp_path, HEADER + "710006,SHREE TRADERS,S1\n710006,Kiosk,S2\n")
    out = io.StringIO()

    call_command("load_stores", str(path), "--if-empty", stdout=out)

    assert f"{path}: not loaded, the store master already holds 1 store" in out.getvalue()
    assert list(Store.objects.values_list("store_id", "name", "area_code")) == [("S1", "B P STORE", "7100015")]


def test_the_sample_master_names_no_store_of_a_real_master():
    """The sample's ids have a prefix of their own, so loading it beside a real master never touches
    a real store (the real masters' ids are `RP00001`, `S00339218` and the like)."""
    with (BASE_DIR / "fixtures" / "stores.csv").open(newline="", encoding="utf-8") as f:
        sample_ids = [row["StoreID"] for row in csv.DictReader(f)]
    payload = json.loads((BASE_DIR / "fixtures" / "sample_payload.json").read_text())
    loaddata = json.loads((BASE_DIR / "fixtures" / "stores.json").read_text())

    assert len(sample_ids) == 100
    assert all(store_id.startswith("SAMPLE-") for store_id in sample_ids)
    assert [entry["pk"] for entry in loaddata] == sample_ids
    assert {visit["store_id"] for visit in payload["visits"]} <= set(sample_ids)
    for real_master in SHARED_DATA.glob("StoreMaster*.csv"):
        with real_master.open(newline="", encoding="utf-8") as f:
            assert not {row["StoreID"] for row in csv.DictReader(f)} & set(sample_ids), real_master
