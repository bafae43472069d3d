import re
from itertools import groupby

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, pagination, renderers, status
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs import selectors, services
from jobs.api import errors, exports, openapi
from jobs.api.serializers import (
    IMAGE_PAGE_SIZE,
    MAX_IMAGE_PAGE_SIZE,
    ImageResultSerializer,
    ImagesQuerySerializer,
    JobDetailSerializer,
    SubmitJobSerializer,
    VisitsQuerySerializer,
    encode_cursor,
    idempotency_key,
)


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


class IdempotencyConflict(APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY


class PendingImagesQuota(APIException):
    """A 429 with Retry-After (DRF's exception handler sends `wait` as the header)."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    # A client's quota frees as its images finish, hundreds to thousands a second at the defaults:
    # 30 s lets a real share of a backlog drain without leaving a client idle for long.
    wait = 30


class SubmitJobView(APIView):
    """POST /api/submit/: create a job; 201 {"job_id": N}."""

    throttle_scope = "submit"

    @extend_schema(
        operation_id="submit",
        summary="Submit a job",
        description="Unknown fields are ignored. A `store_id` not in the store master does not fail the submit: "
        "the job runs its other visits and ends `failed` listing that store.",
        request={"application/json": SubmitJobSerializer},
        parameters=[openapi.IDEMPOTENCY_KEY],
        examples=[openapi.SUBMIT_EXAMPLE],
        responses={
            201: OpenApiResponse(openapi.JOB_CREATED, description="Job created (or replayed by Idempotency-Key)."),
            400: openapi.error(
                "A field missing or wrong, `count` not the number of visits, more images in the job than "
                "RETAILPULSE_MAX_IMAGES_PER_JOB, malformed JSON, a body that is not an object."
            ),
            413: openapi.error("The body is larger than RETAILPULSE_MAX_BODY_BYTES."),
            422: openapi.error("The Idempotency-Key was already used for a different body."),
            **openapi.ACCESS_ERRORS,
            (429, "application/json"): openapi.error(
                "Over the client's RETAILPULSE_THROTTLE_SUBMIT rate, or its RETAILPULSE_CLIENT_MAX_PENDING_IMAGES "
                "quota (the message names the limit and the client's pending images); Retry-After says when to retry."
            ),
        },
    )
    def post(self, request):
        key = idempotency_key(request.headers.get("Idempotency-Key"))
        try:
            data = request.data
        except RequestDataTooBig:
            raise BodyTooLarge() from None
        if data is None:  # DRF would call a JSON `null` body "No data provided"
            raise ValidationError("the body must be a JSON object, got null")
        serializer = SubmitJobSerializer(data=data)
        serializer.is_valid(raise_exception=True)
        try:
            submission = services.submit_job(
                visits=serializer.visit_inputs(),
                client=selectors.api_client(user=request.user),
                callback_url=serializer.validated_data.get("callback_url", ""),
                idempotency_key=key,
                body=data,
            )
        except services.IdempotencyKeyReused as exc:
            raise IdempotencyConflict(str(exc)) from None
        except services.QuotaExceeded as exc:
            raise PendingImagesQuota(str(exc)) from None
        response = Response({"job_id": submission.job.pk}, status=status.HTTP_201_CREATED)
        if submission.replayed:
            response["Idempotent-Replayed"] = "true"
        return response


class JobStatusView(APIView):
    """GET /api/status?jobid=N: one query, whatever the job's size."""

    throttle_scope = "read"

    @extend_schema(
        operation_id="status",
        summary="A job's status",
        parameters=[openapi.JOBID],
        responses={
            200: OpenApiResponse(openapi.STATUS_BODY, description="`error` is there only when the job failed."),
            400: OpenApiResponse(
                {"oneOf": [openapi.EMPTY, openapi.ERROR]},
                description='`{}` for a job that does not exist; `{"error": ...}` when jobid is missing or '
                "not an integer.",
            ),
            **openapi.ACCESS_ERRORS,
        },
    )
    def get(self, request):
        job_id = parse_job_id(request.query_params.get("jobid"), "jobid")
        job = selectors.visible_job(
            client=selectors.api_client(user=request.user), job_id=job_id, fields=selectors.STATUS_FIELDS
        )
        if job is None:
            return Response({}, status=status.HTTP_400_BAD_REQUEST)  # the contract's answer, to the letter
        return Response(selectors.status_body(job=job))


class JobDetailView(APIView):
    """GET /api/jobs/<id>/: status, counters, times and per-store errors."""

    throttle_scope = "read"

    @extend_schema(
        operation_id="job_detail",
        summary="A job's counters, times and errors",
        parameters=[openapi.JOB_ID_PATH],
        responses={200: JobDetailSerializer, 404: openapi.error("No such job."), **openapi.ACCESS_ERRORS},
    )
    def get(self, request, job_id: int):
        job = selectors.visible_job(client=selectors.api_client(user=request.user), job_id=job_id)
        if job is None:
            raise NotFound(f"job {job_id} not found")
        return Response(JobDetailSerializer(job).data)


class ImagePagination(pagination.CursorPagination):
    """Cursor pages cost the same on page 1 and page 1,000 of a 100,000-image job."""

    ordering = "id"
    page_size = IMAGE_PAGE_SIZE
    page_size_query_param = "page_size"
    max_page_size = MAX_IMAGE_PAGE_SIZE

    def get_paginated_response_schema(self, schema):
        link = {"type": "string", "format": "uri", "nullable": True}
        return {
            "type": "object",
            "properties": {"next": link, "previous": link, "results": schema},
            "required": ["next", "previous", "results"],
            "additionalProperties": False,
        }


class CSVRenderer(renderers.BaseRenderer):
    """Selects the CSV export (`?format=csv` or `Accept: text/csv`); the view streams the body itself."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        raise NotImplementedError("the CSV export is streamed by the view")


class JobImagesView(errors.JSONErrorsAndMetadata, generics.ListAPIView):
    """GET /api/jobs/<id>/images/?store_id=&status=: per-image results, paginated, or all as CSV."""

    throttle_scope = "read"

    serializer_class = ImageResultSerializer
    pagination_class = ImagePagination
    renderer_classes = [renderers.JSONRenderer, CSVRenderer]

    @extend_schema(
        operation_id="job_images",
        summary="A job's image results (JSON pages, or every one as CSV)",
        parameters=[openapi.JOB_ID_PATH, ImagesQuerySerializer, openapi.IMAGE_FORMAT],
        responses={
            (200, "application/json"): ImageResultSerializer(many=True),
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR, description="CSV: a header line, then one line per image (RFC 4180, UTF-8)."
            ),
            (400, "application/json"): openapi.error(
                "An unknown status filter, a page size that is not a positive integer."
            ),
            (404, "application/json"): openapi.error(
                "No such job, a cursor not from a `next` or `previous` link, or an unknown format."
            ),
            **openapi.ACCESS_ERRORS,
        },
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def filters(self) -> dict:
        """The job's and the query's checks (the page size too, unused by the CSV export), then the filters."""
        job_id = self.kwargs["job_id"]
        client = selectors.api_client(user=self.request.user)
        if selectors.visible_job(client=client, job_id=job_id, fields=("pk",)) is None:
            raise NotFound(f"job {job_id} not found")
        query = ImagesQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return {"store_id": query.validated_data.get("store_id"), "status": query.validated_data.get("status")}

    def get_queryset(self):
        return selectors.job_images(job_id=self.kwargs["job_id"], **self.filters())

    def list(self, request, *args, **kwargs):
        if request.accepted_renderer.format != CSVRenderer.format:
            return super().list(request, *args, **kwargs)
        rows = exports.image_rows(job_id=self.kwargs["job_id"], **self.filters())
        response = StreamingHttpResponse(exports.csv_text(rows), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="job-{self.kwargs["job_id"]}-images.csv"'
        return response


class VisitsView(APIView):
    """GET /api/visits?area=&storeid=&startdate=&enddate=: measured perimeters by store and visit time."""

    throttle_scope = "read"

    @extend_schema(
        operation_id="visits",
        summary="Measured images by store and visit time",
        description="Images with status `done`, of visits to stores of the store master, grouped by store, in "
        "(store id, visit time) order. Give at least one filter. Pages hold `page_size` data points; follow "
        "`next` (a store whose data goes on appears again at the top of the next page).",
        parameters=[VisitsQuerySerializer],
        responses={
            200: OpenApiResponse(openapi.VISITS_BODY),
            400: openapi.error(
                "No filter, an unknown area or store, a date that does not parse, `enddate` before `startdate`, "
                "a bad cursor or page size."
            ),
            **openapi.ACCESS_ERRORS,
        },
    )
    def get(self, request):
        query = VisitsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        page_size = params["page_size"]
        rows = selectors.visit_results(
            client=selectors.api_client(user=request.user),
            area=params.get("area"),
            store_id=params.get("storeid"),
            start=params.get("startdate"),
            end=params.get("enddate"),
            after=params.get("cursor"),
            limit=page_size + 1,
        )
        next_url = None
        if len(rows) > page_size:
            rows = rows[:page_size]
            last = rows[-1]
            cursor = encode_cursor(selectors.VisitCursor(last.store_id, last.visit_time, last.visit_id, last.image_id))
            query_params = request.query_params.copy()
            query_params["cursor"] = cursor
            next_url = request.build_absolute_uri(f"{request.path}?{query_params.urlencode()}")
        results = [
            {
                "store_id": store_id,
                "area": area,
                "store_name": name,
                "data": [{"date": exports.api_datetime(p.visit_time), "perimeter": p.perimeter} for p in points],
            }
            for (store_id, area, name), points in groupby(rows, key=lambda p: (p.store_id, p.area_code, p.store_name))
        ]
        return Response({"results": results, "next": next_url})
