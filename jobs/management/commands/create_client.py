from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = (
        "Create an API client (a user without a password, who cannot log in to the admin) and print its "
        "token, for `Authorization: Token <key>` with RETAILPULSE_API_TOKENS=1."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="the client's user name, e.g. the retail chain's")

    def handle(self, *args, name: str, **options):
        if not name.strip():
            raise CommandError("the client's name must not be empty")
        if User.objects.filter(username=name).exists():
            raise CommandError(f"a user named {name!r} exists already; `drf_create_token {name}` prints its token")
        with transaction.atomic():
            client = User.objects.create_user(username=name)  # no usable password
            token = Token.objects.create(user=client)
        self.stdout.write(token.key)
