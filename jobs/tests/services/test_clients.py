"""jobs.services.clients: a client's keys are kept as a prefix and a hash, several at once, each
revocable and expiring; the API and the commands answer as the key's state says."""

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from jobs import services
from jobs.models import ClientKey
from jobs.services import KeyCheck

pytestmark = pytest.mark.django_db


@pytest.fixture
def tokens_on(settings):
    cache.clear()
    settings.RETAILPULSE = {**settings.RETAILPULSE, "API_TOKENS": True, "THROTTLE_RATES": {}}
    yield
    cache.clear()


def status_with(key: str):
    return Client(HTTP_AUTHORIZATION=f"Token {key}").get("/api/status?jobid=1")


def every_table_as_text() -> str:
    """Every row of every table of the database, as text."""
    rows = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            rows += [repr(row) for row in cursor.fetchall()]
    return "\n".join(rows)


def test_the_printed_key_is_nowhere_in_the_database_and_gets_in(tokens_on, capsys):
    call_command("create_client", "chain-c")
    key = capsys.readouterr().out.strip()
    prefix, _, secret = key.partition(".")

    stored = every_table_as_text()
    assert prefix in stored  # the visible prefix is kept, to find the key by and to list it
    assert secret not in stored
    assert key not in stored
    assert status_with(key).status_code == 400  # in: no job 1 (a refused key is a 401)


def test_a_revoked_key_gets_a_401_saying_so_while_another_key_keeps_working(tokens_on):
    client, first = services.create_client(name="chain-d")
    second = services.issue_key(client=client, name="rotation")

    services.revoke_key(prefix=first.partition(".")[0])

    refused = status_with(first)
    assert (refused.status_code, refused.json()) == (401, {"error": "API key revoked"})
    assert refused["WWW-Authenticate"] == "Token"
    assert status_with(second).status_code == 400


def test_an_expired_key_gets_a_401_saying_so(tokens_on):
    client, _first = services.create_client(name="chain-e")
    expired = services.issue_key(client=client, name="old", expires_at=timezone.now() - timedelta(seconds=1))

    refused = status_with(expired)
    assert (refused.status_code, refused.json()) == (401, {"error": "API key expired"})


def test_a_deactivated_clients_keys_get_a_401(tokens_on):
    client, key = services.create_client(name="chain-j")
    client.is_active = False
    client.save()

    refused = status_with(key)
    assert (refused.status_code, refused.json()) == (401, {"error": "API key of a deactivated client"})


@pytest.mark.parametrize("wrong", ["{prefix}.{secret}x", "{prefix}.guess", "nothing-like-a-key", "{secret}"])
def test_a_wrong_key_says_only_invalid_whatever_it_shares_with_a_real_one(tokens_on, wrong):
    _client, key = services.create_client(name="chain-f")
    prefix, _, secret = key.partition(".")
    services.revoke_key(prefix=prefix)  # a revoked key's holder learns it is revoked; a guesser does not

    refused = status_with(wrong.format(prefix=prefix, secret=secret))
    assert (refused.status_code, refused.json()) == (401, {"error": "invalid API key"})


def test_a_key_notes_its_last_use_at_most_once_a_minute(tokens_on):
    _client, key = services.create_client(name="chain-g")
    stored = ClientKey.objects.get(prefix=key.partition(".")[0])
    assert stored.last_used_at is None

    assert services.check_key(presented=key)[0] is KeyCheck.VALID
    first_use = ClientKey.objects.get(pk=stored.pk).last_used_at
    assert first_use is not None
    services.check_key(presented=key)
    assert ClientKey.objects.get(pk=stored.pk).last_used_at == first_use
