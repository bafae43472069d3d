"""The API's request and response shapes. Types are strict: a JSON string is not a number."""

import re
from urllib.parse import urlsplit

from rest_framework import serializers
from rest_framework.settings import ISO_8601

from jobs.models import ImageResult, Job
from jobs.services import VisitInput

MISSING = {"required": "missing", "null": "must not be null"}
DATETIME_FORMATS = [ISO_8601, "%Y-%m-%d %H:%M:%S"]
MAX_URL_LENGTH = 2048
SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")


class StrictIntegerField(serializers.IntegerField):
    default_error_messages = {**MISSING, "invalid": "expected an integer"}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    default_error_messages = {**MISSING, "invalid": "expected a string", "blank": "must not be empty"}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class HttpUrlField(StrictCharField):
    default_error_messages = {
        "not_http": "expected an absolute http(s) URL, got {value!r}",
        "max_length": f"URL longer than {MAX_URL_LENGTH} characters",
    }

    def __init__(self, **kwargs):
        super().__init__(max_length=MAX_URL_LENGTH, trim_whitespace=False, **kwargs)

    def to_internal_value(self, data):
        url = super().to_internal_value(data)
        try:
            parts = urlsplit(url)
            valid = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
        except ValueError:  # a bad port or an unclosed IPv6 bracket
            valid = False
        if not valid or SPACE_OR_CONTROL.search(url):
            self.fail("not_http", value=url[:100])
        return url


class VisitSerializer(serializers.Serializer):
    default_error_messages = {"invalid": "expected an object with store_id, image_url and visit_time"}

    store_id = StrictCharField(max_length=64)
    image_url = serializers.ListField(
        child=HttpUrlField(),
        allow_empty=False,
        error_messages={
            **MISSING,
            "not_a_list": "expected a non-empty list of URLs",
            "empty": "expected a non-empty list of URLs",
        },
    )
    visit_time = serializers.DateTimeField(
        input_formats=DATETIME_FORMATS,
        error_messages={
            **MISSING,
            "invalid": "expected a date-time such as 2024-01-21T16:23:40Z (ISO 8601 / RFC 3339) "
            "or 2024-01-21 16:23:40 (UTC)",
        },
    )


class SubmitJobSerializer(serializers.Serializer):
    """`{"count": N, "visits": [...]}`; unknown fields are ignored."""

    default_error_messages = {"invalid": "the body must be a JSON object, got {datatype}"}

    count = StrictIntegerField(min_value=1, error_messages={"min_value": "must be at least 1"})
    visits = serializers.ListField(
        child=VisitSerializer(),
        allow_empty=False,
        error_messages={
            **MISSING,
            "not_a_list": "expected a non-empty list of visits",
            "empty": "expected a non-empty list of visits",
        },
    )

    def validate(self, attrs):
        if attrs["count"] != len(attrs["visits"]):
            raise serializers.ValidationError(
                {"count": f"is {attrs['count']} but there are {len(attrs['visits'])} visits"}
            )
        return attrs

    def visit_inputs(self) -> list[VisitInput]:
        return [
            VisitInput(store_id=v["store_id"], image_urls=v["image_url"], visit_time=v["visit_time"])
            for v in self.validated_data["visits"]
        ]


def status_body(job: Job) -> dict:
    """The body of GET /api/status, exactly as the contract has it."""
    body = {"status": job.status, "job_id": job.pk}
    if job.status == Job.Status.FAILED:
        body["error"] = job.errors
    return body


class JobDetailSerializer(serializers.ModelSerializer):
    job_id = serializers.IntegerField(source="pk")
    images = serializers.SerializerMethodField()
    progress = serializers.SerializerMethodField()
    error = serializers.JSONField(source="errors")

    class Meta:
        model = Job
        fields = ["job_id", "status", "images", "progress", "created_at", "started_at", "finished_at", "error"]

    def get_images(self, job: Job) -> dict:
        return {
            "total": job.images_total,
            "done": job.images_done,
            "failed": job.images_failed,
            "pending": job.images_pending,
        }

    def get_progress(self, job: Job) -> float:
        """Share of images with an outcome, 0.0 to 1.0."""
        if not job.images_total:
            return 1.0
        return round((job.images_done + job.images_failed) / job.images_total, 4)


class ImageResultSerializer(serializers.ModelSerializer):
    store_id = serializers.CharField(source="visit.store_code")
    visit_time = serializers.DateTimeField(source="visit.visit_time")

    class Meta:
        model = ImageResult
        fields = [
            "id",
            "store_id",
            "visit_time",
            "url",
            "width",
            "height",
            "perimeter",
            "status",
            "error",
            "processed_at",
        ]
