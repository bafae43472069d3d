from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from stores.services import StoreMasterError, StoreMasterNotEmpty, load_store_master


class Command(BaseCommand):
    help = "Load (upsert) the store master from a CSV file with columns AreaCode, StoreName, StoreID."

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path, help="CSV file of the store master")
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="load only into an empty store master; otherwise change nothing and say so (exit 0)",
        )

    def handle(self, *args, path: Path, if_empty: bool, **options):
        try:
            with path.open("rb") as f:
                report = load_store_master(f, only_if_empty=if_empty)
        except StoreMasterNotEmpty as exc:
            self.stdout.write(f"{path}: not loaded, {exc}")
            return
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror}") from exc
        except StoreMasterError as exc:
            raise CommandError(f"{path}: nothing loaded, {len(exc.problems)} problem(s):\n{exc}") from exc
        self.stdout.write(self.style.SUCCESS(f"{path}: {report}"))
