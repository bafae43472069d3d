"""Fixtures of the API tests (jobs/tests/test_api_*.py)."""

import pytest

from stores.models import Store


@pytest.fixture
def two_stores(db):
    """Two stores of the sample master, in one area: the stores the API tests submit visits to."""
    Store.objects.bulk_create(
        [
            Store(store_id="S00339218", name="BHARAT STORE", area_code="710006"),
            Store(store_id="S01408764", name="Asha Communication", area_code="710006"),
        ]
    )
