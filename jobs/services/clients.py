"""API clients and their keys: a client is a user without a password; it calls the API with any of
its keys that is neither revoked nor expired (djangorestframework-api-key stores each as a prefix
and a hash). Issuing, checking and revoking keys, for the API, the commands and the admin."""

from datetime import datetime, timedelta
from enum import StrEnum

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from jobs.models import ClientKey

PREFIX_LENGTH = 8  # djangorestframework-api-key's prefix: the part of a key before its dot
LAST_USE_EVERY = timedelta(minutes=1)  # last_used_at is written at most this often per key


class KeyCheck(StrEnum):
    """What a presented key is. Only the holder of a whole key learns it is revoked or expired:
    a wrong key, with a right prefix or not, is INVALID."""

    VALID = "valid"
    INVALID = "invalid API key"
    REVOKED = "API key revoked"
    EXPIRED = "API key expired"
    INACTIVE = "API key of a deactivated client"


class ClientExists(Exception):
    pass


def create_client(*, name: str) -> tuple[User, str]:
    """A new client and its first key, returned once: only its hash is kept."""
    with transaction.atomic():
        if User.objects.filter(username=name).exists():
            raise ClientExists(name)
        client = User.objects.create_user(username=name)  # no usable password: no admin login
        return client, issue_key(client=client, name="first key")


def issue_key(*, client: User, name: str, expires_at: datetime | None = None) -> str:
    """Another key for `client` (its others keep working: rotate, then revoke the old one)."""
    _key, secret = ClientKey.objects.create_key(client=client, name=name[:50], expiry_date=expires_at)
    return secret


def revoke_key(*, prefix: str) -> ClientKey | None:
    """Revoke the key of that prefix (for good); None if there is no such key."""
    key = ClientKey.objects.filter(prefix=prefix).first()
    if key is not None and not key.revoked:
        key.revoked = True
        key.save(update_fields=["revoked"])
    return key


def check_key(*, presented: str) -> tuple[KeyCheck, ClientKey | None]:
    """Who `presented` belongs to, and whether it may be used now; notes its use."""
    prefix = presented.partition(".")[0][:PREFIX_LENGTH]  # keys from DRF's authtoken have no dot
    key = ClientKey.objects.select_related("client").filter(prefix=prefix).first()
    if key is None or not key.is_valid(presented):
        return KeyCheck.INVALID, None
    if key.revoked:
        return KeyCheck.REVOKED, key
    if key.has_expired:
        return KeyCheck.EXPIRED, key
    if not key.client.is_active:
        return KeyCheck.INACTIVE, key
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at >= LAST_USE_EVERY:
        ClientKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return KeyCheck.VALID, key
