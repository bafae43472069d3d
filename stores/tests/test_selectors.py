import pytest

from stores.models import Store
from stores.selectors import existing_store_ids


@pytest.mark.django_db
def test_existing_store_ids_finds_known_ids_among_many():
    Store.objects.bulk_create([Store(store_id=f"RP{n:05d}", name="x", area_code="1") for n in range(0, 5000, 2)])
    asked = {f"RP{n:05d}" for n in range(5000)} | {f"JUNK{n}" for n in range(70_000)}

    assert existing_store_ids(asked) == {f"RP{n:05d}" for n in range(0, 5000, 2)}
