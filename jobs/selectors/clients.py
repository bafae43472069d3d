"""API clients' keys, as operators list them."""

from django.contrib.auth.models import User
from django.db.models import QuerySet

from jobs.models import ClientKey


def client_keys(*, client: User) -> QuerySet[ClientKey]:
    """The client's keys, oldest first (only prefixes and hashes: a key is never stored)."""
    return ClientKey.objects.filter(client=client).order_by("created")


def key_state(key: ClientKey) -> str:
    """How a key reads in a listing: revoked, expired or active."""
    return "revoked" if key.revoked else "expired" if key.has_expired else "active"
