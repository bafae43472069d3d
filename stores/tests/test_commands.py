"""Tests of the `load_stores` management command."""

import io

import pytest
from django.core.management import CommandError, call_command

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
