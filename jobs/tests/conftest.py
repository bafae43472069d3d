"""Fixtures of the API, admin and dashboard tests."""

import pytest

from stores.models import Store


@pytest.fixture
def two_stores(db):
    """Two stores of the sample master, in one area: the stores the API tests submit visits to."""
    Store.objects.bulk_create(
        [
            Store(store_id="SAMPLE-00001", name="BHARAT STORE", area_code="710006"),
            Store(store_id="SAMPLE-00002", name="Asha Communication", area_code="710006"),
        ]
    )


@pytest.fixture
def stores_s1_s2(db):
    """Stores S1 and S2 ("Name of S1", ...): the stores the admin and dashboard tests' jobs visit."""
    Store.objects.bulk_create([Store(store_id=s, name=f"Name of {s}", area_code="700") for s in ("S1", "S2")])
