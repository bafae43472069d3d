from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from jobs.services.retention import prune_jobs


class Command(BaseCommand):
    help = (
        "Remove the jobs that finished more than --days ago (RETAILPULSE_RETENTION_DAYS by default) with "
        "their visits, images, chunks and counts, in short slices while the service runs; ongoing jobs "
        "are never touched. Prints how many jobs and images went."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=float, help="days a finished job is kept (fractions allowed: 0.5 is 12 h)")

    def handle(self, *args, days: float | None, **options):
        if days is None:
            days = settings.RETAILPULSE["RETENTION_DAYS"]
            if not days:
                raise CommandError("RETAILPULSE_RETENTION_DAYS is 0 (retention off): give --days N")
        if not 0 < days <= settings.RETENTION_MAX_DAYS:
            raise CommandError(
                f"--days {days:g}: expected a number of days above 0, at most {settings.RETENTION_MAX_DAYS:,}"
            )
        self.stdout.write(str(prune_jobs(older_than=timedelta(days=days))))
