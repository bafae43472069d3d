"""What the database itself guarantees about a job's rows, whatever code writes them."""

import pytest
from django.db import IntegrityError, connection, transaction

from jobs.models import ImageResult, Job, Visit
from jobs.tests.helpers import create_job

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(stores_s1_s2) -> Job:
    return create_job(("S1", 3), ("S2", 2))


def breaks_a_constraint(*deletes: tuple[type, str]) -> bool:
    """Delete rows with plain SQL ((model, WHERE clause on the job's id) in turn), run the deferred
    checks a commit would run, and roll it all back: whether the checks failed."""
    savepoint = transaction.savepoint()
    try:
        with connection.cursor() as cursor:
            for model, where in deletes:
                cursor.execute(f"DELETE FROM {model._meta.db_table} WHERE {where}")
        connection.check_constraints()
    except IntegrityError:
        return True
    finally:
        transaction.savepoint_rollback(savepoint)
    return False


def test_an_image_cannot_outlive_its_job(job):
    """Through its visit: an image row has no constraint on its job of its own."""
    assert breaks_a_constraint((Job, f"id = {job.pk}"))
    assert breaks_a_constraint((Visit, f"job_id = {job.pk}"), (Job, f"id = {job.pk}"))
    assert breaks_a_constraint((Visit, f"job_id = {job.pk}"))
    assert not breaks_a_constraint((ImageResult, f"job_id = {job.pk}"), (Visit, f"job_id = {job.pk}"))
    assert ImageResult.objects.filter(job=job).count() == 5  # rolled back


def test_deleting_a_job_deletes_its_visits_and_images(job):
    other = create_job(("S1", 1))
    job.delete()
    assert not Visit.objects.filter(job_id=job.pk).exists()
    assert not ImageResult.objects.filter(job_id=job.pk).exists()
    assert ImageResult.objects.filter(job=other).count() == 1


def plan(queryset) -> str:
    """The database's plan for `queryset`, with PostgreSQL told to use an index where it can: on a
    test's few rows it would rather read the whole table, whatever indexes there are."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # Until the test's transaction ends. A bitmap scan reads a range of the index out of order.
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("SET LOCAL enable_bitmapscan = off")
    return queryset.explain()


def sorts(plan_text: str) -> bool:
    """Whether a plan sorts the rows it read (SQLite: a temporary B-tree for the ORDER BY; PostgreSQL: a Sort)."""
    return "TEMP B-TREE" in plan_text or "Sort" in plan_text


@pytest.mark.parametrize("newest_first", [False, True])
def test_a_jobs_images_are_read_in_id_order_from_an_index_of_the_job(job, newest_first):
    """A job's image pages, its CSV export and the admin's list of its images: the job's own index
    range in id order, not the primary key walked through every other job's images."""
    create_job(("S1", 2))
    images = ImageResult.objects.filter(job=job).order_by("-id" if newest_first else "id")[:101]
    text = plan(images)
    assert "image_job_id" in text
    assert not sorts(text)  # the index's order is the page's


def test_failed_images_of_every_job_are_read_newest_first_from_their_own_index(job):
    """The admin's failed images: a small index of only those, not a walk back through every image."""
    text = plan(ImageResult.objects.filter(status=ImageResult.Status.FAILED).order_by("-id")[:100])
    assert "image_failed" in text
    assert not sorts(text)
