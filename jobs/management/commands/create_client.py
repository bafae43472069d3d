from django.core.management.base import BaseCommand, CommandError

from jobs.services.clients import ClientExists, create_client


class Command(BaseCommand):
    help = (
        "Create an API client (a user without a password, who cannot log in to the admin) and print its "
        "first API key, once, for `Authorization: Token <key>` with RETAILPULSE_API_TOKENS=1; only its "
        "hash is kept. `api_keys` issues more, lists and revokes them."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="the client's user name, e.g. the retail chain's")

    def handle(self, *args, name: str, **options):
        if not name.strip():
            raise CommandError("the client's name must not be empty")
        try:
            _client, key = create_client(name=name)
        except ClientExists:
            raise CommandError(
                f"a user named {name!r} exists already; `api_keys issue {name}` gives it a key"
            ) from None
        self.stdout.write(key)
