"""The clusters' heartbeats' cache (jobs.ops.heartbeat)."""

import pytest
from django.core.cache import caches
from django.db import connection
from django.test.utils import CaptureQueriesContext

pytestmark = pytest.mark.django_db

TABLE = "retailpulse_cluster_cache"


def rows() -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {TABLE}")
        return cursor.fetchone()[0]


def test_reading_heartbeats_writes_nothing_and_deleting_still_deletes():
    """A stopped cluster's expired heartbeat is skipped, not deleted: on SQLite that delete waited
    behind a worker's write lock, and failed the dashboard past the busy timeout."""
    cache = caches["cluster"]
    cache.set("stopped-cluster", "stat", timeout=-5)  # expired already
    cache.set("live-cluster", "stat")
    before = rows()
    with CaptureQueriesContext(connection) as queries:
        assert cache.get_many(["stopped-cluster", "live-cluster"]) == {"live-cluster": "stat"}
    assert not [query["sql"] for query in queries if query["sql"].lstrip().upper().startswith("DELETE")]
    assert rows() == before

    cache.delete_many(["stopped-cluster", "live-cluster"])
    assert rows() == before - 2
