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
