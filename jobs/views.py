import re

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from rest_framework import generics, pagination, status
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs import selectors, services
from jobs.models import ImageResult
from jobs.serializers import ImageResultSerializer, JobDetailSerializer, SubmitJobSerializer, status_body

MAX_ID = 2**63 - 1  # larger ids cannot exist (BIGINT), and would overflow the query


def parse_job_id(raw: str | None, name: str) -> int:
    if raw is None or raw == "":
        raise ValidationError({name: "missing (e.g. ?jobid=123)"})
    if not re.fullmatch(r"-?[0-9]+", raw.strip()):
        raise ValidationError({name: f"expected an integer, got {raw[:40]!r}"})
    return int(raw)


class BodyTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE

    def __init__(self):
        super().__init__(f"the body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE:,} bytes")


class SubmitJobView(APIView):
    """POST /api/submit/: create a job; 201 {"job_id": N}."""

    def post(self, request):
        try:
            data = request.data
        except RequestDataTooBig:
            raise BodyTooLarge() from None
        if data is None:  # DRF would call a JSON `null` body "No data provided"
            raise ValidationError("the body must be a JSON object, got null")
        serializer = SubmitJobSerializer(data=data)
        serializer.is_valid(raise_exception=True)
        job = services.create_job(serializer.visit_inputs())
        return Response({"job_id": job.pk}, status=status.HTTP_201_CREATED)


class JobStatusView(APIView):
    """GET /api/status?jobid=N: one query, whatever the job's size."""

    def get(self, request):
        job_id = parse_job_id(request.query_params.get("jobid"), "jobid")
        job = selectors.get_job(job_id) if 0 < job_id <= MAX_ID else None
        if job is None:
            return Response({}, status=status.HTTP_400_BAD_REQUEST)  # the contract's answer, to the letter
        return Response(status_body(job))


class JobDetailView(APIView):
    """GET /api/jobs/<id>/: status, counters, times and per-store errors."""

    def get(self, request, job_id: int):
        job = selectors.get_job(job_id) if job_id <= MAX_ID else None
        if job is None:
            raise NotFound(f"job {job_id} not found")
        return Response(JobDetailSerializer(job).data)


class ImagePagination(pagination.CursorPagination):
    """Cursor pages cost the same on page 1 and page 1,000 of a 100,000-image job."""

    ordering = "id"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


class JobImagesView(generics.ListAPIView):
    """GET /api/jobs/<id>/images/?store_id=&status=: per-image results, paginated."""

    serializer_class = ImageResultSerializer
    pagination_class = ImagePagination

    def get_queryset(self):
        job_id = self.kwargs["job_id"]
        if job_id > MAX_ID or selectors.get_job(job_id) is None:
            raise NotFound(f"job {job_id} not found")
        wanted_status = self.request.query_params.get("status")
        if wanted_status and wanted_status not in ImageResult.Status.values:
            raise ValidationError({"status": f"expected one of {', '.join(ImageResult.Status.values)}"})
        return selectors.job_images(job_id, store_id=self.request.query_params.get("store_id"), status=wanted_status)
