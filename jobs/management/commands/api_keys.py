from datetime import timedelta

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from jobs import selectors
from jobs.services.clients import issue_key, revoke_key


class Command(BaseCommand):
    help = (
        "A client's API keys: `issue CLIENT [--name N] [--expires-in-days D]` prints a new key once; "
        "`list CLIENT` shows each key by its prefix with its last use; `revoke PREFIX` ends one for good."
    )

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True)
        issue = actions.add_parser("issue", help="print a new key for the client, once")
        issue.add_argument("client")
        issue.add_argument("--name", default="", help="what the key is for (50 characters)")
        issue.add_argument("--expires-in-days", type=int, help="the key stops working after this many days")
        listing = actions.add_parser("list", help="the client's keys")
        listing.add_argument("client")
        revoke = actions.add_parser("revoke", help="revoke a key, by its prefix")
        revoke.add_argument("prefix")

    def handle(self, *args, action: str, **options):
        if action == "revoke":
            key = revoke_key(prefix=options["prefix"])
            if key is None:
                raise CommandError(f"no API key has the prefix {options['prefix']!r}")
            self.stdout.write(f"revoked {key.prefix} ({key.name}) of {key.client.username}")
            return
        client = User.objects.filter(username=options["client"]).first()
        if client is None:
            raise CommandError(f"no client named {options['client']!r}; `create_client` makes one")
        if action == "issue":
            days = options["expires_in_days"]
            if days is not None and days < 1:
                raise CommandError("--expires-in-days must be at least 1")
            expires_at = timezone.now() + timedelta(days=days) if days else None
            name = options["name"] or f"issued {timezone.now():%Y-%m-%d}"
            self.stdout.write(issue_key(client=client, name=name, expires_at=expires_at))
            return
        self.stdout.write(
            "prefix    name                       created           last used         expires           state"
        )
        for key in selectors.client_keys(client=client):
            self.stdout.write(
                f"{key.prefix:<9} {key.name[:26]:<26} {_when(key.created)} {_when(key.last_used_at)} "
                f"{_when(key.expiry_date)} {selectors.key_state(key)}"
            )


def _when(moment) -> str:
    return f"{moment:%Y-%m-%d %H:%M}" if moment else f"{'-':<16}"
