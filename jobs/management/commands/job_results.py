from django.core.management.base import BaseCommand, CommandError

from jobs import selectors
from jobs.api import exports
from jobs.models import ImageResult


class Command(BaseCommand):
    help = "Write a job's per-image results to standard output, as CSV or JSON (streamed: any size)."

    def add_arguments(self, parser):
        parser.add_argument("job_id", type=int)
        parser.add_argument("--format", choices=["csv", "json"], default="csv", help="csv (the default) or json")
        parser.add_argument("--store-id", help="only this store's images")
        parser.add_argument("--status", choices=ImageResult.Status.values, help="only images with this status")

    def handle(self, *args, job_id: int, format: str, store_id: str | None, status: str | None, **options):
        if selectors.get_job(job_id=job_id) is None:
            raise CommandError(f"job {job_id} not found")
        rows = exports.image_rows(job_id=job_id, store_id=store_id, status=status)
        text = exports.csv_text(rows) if format == "csv" else exports.json_text(rows)
        for piece in text:
            self.stdout.write(piece, ending="")
