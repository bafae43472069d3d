"""Migrations that move data: DRF authtoken's keys in clear become hashed API keys."""

import importlib

import pytest
from django.apps import apps
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone

from jobs.services import KeyCheck, check_key

hashing = importlib.import_module("jobs.migrations.0012_client_keys")
LEGACY_KEY = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"  # DRF authtoken's form: 40 hex digits


@pytest.mark.django_db(transaction=True)  # SQLite's schema editor cannot run inside the test's transaction
def test_a_clear_token_becomes_a_hashed_key_that_still_gets_in_and_the_clear_table_goes():
    client = User.objects.create_user("legacy-chain")
    with connection.cursor() as cursor:
        columns = "key varchar(40) PRIMARY KEY, created timestamp with time zone, user_id integer"
        cursor.execute(f"CREATE TABLE authtoken_token ({columns})")
        cursor.execute(
            "INSERT INTO authtoken_token (key, created, user_id) VALUES (%s, %s, %s)",
            [LEGACY_KEY, timezone.now(), client.pk],
        )

    with connection.schema_editor() as schema_editor:
        hashing.hash_the_clear_tokens(apps, schema_editor)

    check, key = check_key(presented=LEGACY_KEY)
    assert check is KeyCheck.VALID
    assert key is not None
    assert (key.client, key.prefix) == (client, LEGACY_KEY[:8])
    assert LEGACY_KEY not in key.hashed_key
    assert "authtoken_token" not in connection.introspection.table_names()
