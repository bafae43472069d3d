import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError
from rest_framework.exceptions import ValidationError
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from jobs import services
from jobs.api.errors import error_message
from jobs.api.serializers import SubmitJobSerializer, idempotency_key
from jobs.models import Job

EXIT_FAILED, EXIT_REFUSED, EXIT_TIMEOUT, EXIT_INTERRUPTED = 1, 2, 3, 130


class Command(BaseCommand):
    help = (
        "Submit a job from a JSON file (the body of POST /api/submit, checked the same way). With --wait, "
        "show its progress until it ends, then its outcome; exit 0 when it completed, 1 when it failed. "
        "While it waits, only warnings and errors are logged, above the progress bar."
    )

    def add_arguments(self, parser):
        parser.add_argument("payload", type=Path, help='JSON file, or "-" for standard input')
        parser.add_argument("--wait", action="store_true", help="show progress until the job ends")
        parser.add_argument("--idempotency-key", help="like the Idempotency-Key header of the API")
        parser.add_argument(
            "--client", help="user name of the API client that owns the job (default: the anonymous client)"
        )
        parser.add_argument("--poll", type=float, default=0.5, help="seconds between progress reads (0.5)")
        parser.add_argument("--timeout", type=float, help="stop waiting after this many seconds (exit 3)")

    def handle(self, *args, payload: Path, wait: bool, poll: float, timeout: float | None, **options):
        data = self.read_payload(payload)
        serializer = SubmitJobSerializer(data=data)
        try:
            key = idempotency_key(options["idempotency_key"])
            serializer.is_valid(raise_exception=True)
        except ValidationError as exc:
            raise CommandError(f"{payload}: refused: {error_message(exc.detail)}", returncode=EXIT_REFUSED) from None
        client = None
        if options["client"] is not None:
            client = User.objects.filter(username=options["client"]).first()
            if client is None:
                raise CommandError(f"no client named {options['client']!r}", returncode=EXIT_REFUSED)
        with logging_above_the_bar() if wait else nullcontext():
            try:
                submission = services.submit_job(
                    visits=serializer.visit_inputs(),
                    client=client,
                    callback_url=serializer.validated_data.get("callback_url", ""),
                    idempotency_key=key,
                    body=data,
                )
            except (services.IdempotencyKeyReused, services.QuotaExceeded) as exc:
                raise CommandError(f"{payload}: refused: {exc}", returncode=EXIT_REFUSED) from None
            job = submission.job
            again = " (already submitted with this idempotency key)" if submission.replayed else ""
            self.stdout.write(f"job {job.pk} submitted: {job.images_total} images{again}")
            if wait:
                self.wait_for(job, poll, timeout)

    def read_payload(self, path: Path):
        try:
            text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror}", returncode=EXIT_REFUSED) from None
        except UnicodeDecodeError:
            raise CommandError(f"{path}: not UTF-8 text", returncode=EXIT_REFUSED) from None
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise CommandError(f"{path}: refused: JSON parse error - {exc}", returncode=EXIT_REFUSED) from None

    def wait_for(self, job: Job, poll: float, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        # tqdm writes to the real stream: Django's wrapper would end every update with a newline.
        bar = tqdm(total=job.images_total, unit="img", desc=f"job {job.pk}", file=getattr(self.stderr, "_out", None))
        try:
            while True:
                job = Job.objects.get(pk=job.pk)
                # The counts first: a draw shows both, so a count and its failures come from one poll.
                bar.set_postfix(failed=job.images_failed, refresh=False)
                bar.update(job.images_done + job.images_failed - bar.n)
                if job.status != Job.Status.ONGOING:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    bar.close()
                    raise CommandError(
                        f"job {job.pk} still ongoing after {timeout:g} s; it goes on", returncode=EXIT_TIMEOUT
                    )
                time.sleep(poll)
        except KeyboardInterrupt:
            bar.close()
            raise CommandError(f"stopped waiting; job {job.pk} goes on", returncode=EXIT_INTERRUPTED) from None
        bar.close()
        self.report(job)

    def report(self, job: Job) -> None:
        counts = f"{job.images_done} of {job.images_total} images measured, {job.images_failed} failed"
        if job.status == Job.Status.COMPLETED:
            self.stdout.write(self.style.SUCCESS(f"job {job.pk} completed: {counts}"))
            return
        self.stdout.write(self.style.ERROR(f"job {job.pk} failed: {counts}"))
        for entry in job.errors:
            self.stdout.write(f"  {entry['store_id']}: {entry['error']}")
        raise CommandError(f"job {job.pk} failed", returncode=EXIT_FAILED)


@contextmanager
def logging_above_the_bar() -> Iterator[None]:
    """Log records through tqdm.write, which prints them above the bar instead of into its line;
    warnings and errors only: the service's INFO lines (the job created, finished) say what the
    command prints itself."""
    with logging_redirect_tqdm():
        logging.getLogger().handlers[-1].setLevel(logging.WARNING)  # the handler it put in
        yield
