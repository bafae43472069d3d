"""Reads of the store master."""

from stores.models import Store

LOOKUP_BATCH = 1000  # ids per query: keeps under SQLite's and PostgreSQL's parameter limits


def existing_store_ids(store_ids: set[str]) -> set[str]:
    """The ids of `store_ids` that are in the store master."""
    ordered = sorted(store_ids)
    found: set[str] = set()
    for i in range(0, len(ordered), LOOKUP_BATCH):
        batch = ordered[i : i + LOOKUP_BATCH]
        found.update(Store.objects.filter(store_id__in=batch).values_list("store_id", flat=True))
    return found


def store_exists(store_id: str) -> bool:
    return Store.objects.filter(store_id=store_id).exists()


def area_exists(area_code: str) -> bool:
    return Store.objects.filter(area_code=area_code).exists()
