"""The API's request and response shapes. Types are strict: a JSON string is not a number."""

import base64
import binascii
import json
import re
from urllib.parse import urlsplit

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import ISO_8601, serializers

from jobs.api import openapi
from jobs.models import IDEMPOTENCY_KEY_MAX_LENGTH, ImageResult, Job
from jobs.selectors import IMAGE_COLUMNS, VisitCursor
from jobs.services import VisitInput
from stores.selectors import area_exists, store_exists

MISSING = {"required": "missing", "null": "must not be null"}
DATETIME_FORMATS = [ISO_8601, "%Y-%m-%d %H:%M:%S"]
MAX_URL_LENGTH = 2048
IMAGE_PAGE_SIZE, MAX_IMAGE_PAGE_SIZE = 100, 1000
SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")
# The URLs nearly every client sends (a plain host name, a port of at most 4 digits): each one
# that matches passes the full check below (a property test says so), at a fraction of its cost.
PLAIN_HTTP_URL = re.compile(r"https?://[A-Za-z0-9.-]+(?::[1-9][0-9]{0,3})?(?:[/?#][^\s\x00-\x1f\x7f]*)?")

# The URLs is_http_url takes, as the schema's pattern (a property test checks that each match
# passes): http(s), a host, a port from 1 to 65535, no whitespace or control character. The host
# is in ASCII (an IDN host as punycode) or an IPv6 address without a zone or IPv4 tail.
_HOST_CHAR = openapi.char_class(c for c in map(chr, range(0x21, 0x7F)) if c not in "/?#@:[]")
_USER_INFO_CHAR = openapi.char_class(c for c in map(chr, range(0x21, 0x7F)) if c not in "/?#[]")
_URL_CHAR = openapi.char_class((c for c in openapi.BASIC_MULTILINGUAL_PLANE if SPACE_OR_CONTROL.match(c)), negated=True)
_H16 = "[0-9A-Fa-f]{1,4}"
# RFC 4291's text forms: 8 groups, or fewer around one `::`.
_IPV6 = "|".join(
    [f"({_H16}:){{7}}{_H16}", f"({_H16}:){{1,7}}:", f":((:{_H16}){{1,7}}|:)"]
    + [f"({_H16}:){{1,{7 - n}}}(:{_H16}){{1,{n}}}" for n in range(1, 7)]
)
_PORT = "0*(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
HTTP_URL_PATTERN = (
    rf"^[Hh][Tt][Tt][Pp][Ss]?://({_USER_INFO_CHAR}*@)?({_HOST_CHAR}+|\[({_IPV6})\])(:({_PORT})?)?"
    rf"([/?#]{_URL_CHAR}*)?$"
)


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


def is_http_url(url: str) -> bool:
    """An absolute http(s) URL with a host, and no spaces or control characters."""
    return PLAIN_HTTP_URL.fullmatch(url) is not None or parses_as_http_url(url)


def parses_as_http_url(url: str) -> bool:
    """is_http_url's full check."""
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a bad port or an unclosed IPv6 bracket
        valid = False
    return valid and not SPACE_OR_CONTROL.search(url)


@extend_schema_field({"type": "string", "pattern": HTTP_URL_PATTERN, "maxLength": MAX_URL_LENGTH})
class HttpUrlField(StrictCharField):
    default_error_messages = {
        "not_http": "expected an absolute http(s) URL, got {value!r}",
        "max_length": f"URL longer than {MAX_URL_LENGTH} characters",
    }

    def __init__(self, **kwargs):
        super().__init__(max_length=MAX_URL_LENGTH, trim_whitespace=False, **kwargs)

    def to_internal_value(self, data):
        url = super().to_internal_value(data)
        if not is_http_url(url):
            self.fail("not_http", value=url[:100])
        return url


class HttpUrlListField(serializers.ListField):
    """A list of HttpUrlField values, each good one checked in a plain loop.

    DRF runs a field's whole validation (empty values, validators, error wrapping) per item, which
    dominates the submit of a big job. A URL that fails the quick check goes through the field's
    own validation, so the error names the problem exactly as it would alone.
    """

    def __init__(self, **kwargs):
        super().__init__(child=HttpUrlField(), **kwargs)

    def run_child_validation(self, data):
        urls: list[str] = []
        errors: dict = {}
        for index, item in enumerate(data):
            if isinstance(item, str) and 0 < len(item) <= MAX_URL_LENGTH and is_http_url(item):
                urls.append(item)
                continue
            try:
                urls.append(self.child.run_validation(item))
            except serializers.ValidationError as exc:
                errors[index] = exc.detail
        if errors:
            raise serializers.ValidationError(errors)
        return urls


@extend_schema_field(
    {
        **openapi.DATE_TIME_INPUT,
        "description": "ISO 8601 / RFC 3339 (`2024-01-21T16:23:40Z`, offsets, fractions, a date alone meaning "
        "midnight) or `2024-01-21 16:23:40`; a time without a zone is UTC.",
    }
)
class VisitTimeField(serializers.DateTimeField):
    pass


class VisitSerializer(serializers.Serializer):
    default_error_messages = {"invalid": "expected an object with store_id, image_url and visit_time"}

    store_id = StrictCharField(max_length=64)
    image_url = HttpUrlListField(
        min_length=1,
        error_messages={
            **MISSING,
            "not_a_list": "expected a non-empty list of URLs",
            "min_length": "expected a non-empty list of URLs",
        },
    )
    visit_time = VisitTimeField(
        input_formats=DATETIME_FORMATS,
        error_messages={
            **MISSING,
            "invalid": "expected a date-time such as 2024-01-21T16:23:40Z (ISO 8601 / RFC 3339) "
            "or 2024-01-21 16:23:40 (UTC)",
        },
    )

    def validate_image_url(self, urls: list[str]) -> list[str]:
        if len(urls) > settings.RETAILPULSE["MAX_IMAGES_PER_VISIT"]:
            raise _limit_error("images in one visit", len(urls), "MAX_IMAGES_PER_VISIT")
        return urls


def _limit_error(what: str, count: int, setting: str) -> serializers.ValidationError:
    limit = settings.RETAILPULSE[setting]
    return serializers.ValidationError(f"{count:,} {what}, more than the limit of {limit:,} (RETAILPULSE_{setting})")


class SubmitJobSerializer(serializers.Serializer):
    """`{"count": N, "visits": [...], "callback_url": "https://..."}`; unknown fields are ignored."""

    default_error_messages = {"invalid": "the body must be a JSON object, got {datatype}"}

    count = StrictIntegerField(min_value=1, error_messages={"min_value": "must be at least 1"})
    visits = serializers.ListField(
        child=VisitSerializer(),
        min_length=1,
        error_messages={
            **MISSING,
            "not_a_list": "expected a non-empty list of visits",
            "min_length": "expected a non-empty list of visits",
        },
    )
    callback_url = HttpUrlField(
        required=False,
        help_text="POSTed the job's final status (the body of GET /api/status) when the job ends, "
        "signed with X-RetailPulse-Signature: sha256=<HMAC-SHA256 of the body>.",
    )

    def validate_visits(self, visits: list[dict]) -> list[dict]:
        if len(visits) > settings.RETAILPULSE["MAX_VISITS"]:
            raise _limit_error("visits", len(visits), "MAX_VISITS")
        images = sum(len(v["image_url"]) for v in visits)
        if images > settings.RETAILPULSE["MAX_IMAGES_PER_JOB"]:
            raise _limit_error("images in the job", images, "MAX_IMAGES_PER_JOB")
        quota = settings.RETAILPULSE["CLIENT_MAX_PENDING_IMAGES"]
        if quota and images > quota:  # a 400, not the quota's 429: no wait would let it in
            raise _limit_error("images in the job", images, "CLIENT_MAX_PENDING_IMAGES")
        return visits

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


def idempotency_key(raw: str | None) -> str | None:
    """The Idempotency-Key header: absent is None; empty or too long is refused."""
    if raw is None:
        return None
    if not raw.strip():
        raise serializers.ValidationError({"Idempotency-Key": "must not be empty"})
    if len(raw) > IDEMPOTENCY_KEY_MAX_LENGTH:
        raise serializers.ValidationError({"Idempotency-Key": f"longer than {IDEMPOTENCY_KEY_MAX_LENGTH} characters"})
    return raw


class JobDetailSerializer(serializers.ModelSerializer):
    job_id = serializers.IntegerField(source="pk")
    images = serializers.SerializerMethodField()
    progress = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = ["job_id", "status", "images", "progress", "created_at", "started_at", "finished_at", "error"]
        # Output only: every field is always there (the schema says so).
        extra_kwargs = {name: {"required": True} for name in ("status", "started_at", "finished_at")}

    @extend_schema_field(openapi.IMAGE_COUNTS)
    def get_images(self, job: Job) -> dict:
        return {
            "total": job.images_total,
            "done": job.images_done,
            "failed": job.images_failed,
            "pending": job.images_pending,
        }

    @extend_schema_field(openapi.STORE_ERRORS)
    def get_error(self, job: Job) -> list[dict]:
        return job.errors

    def get_progress(self, job: Job) -> float:
        """Share of images with an outcome, 0.0 to 1.0."""
        if not job.images_total:
            return 1.0
        return round((job.images_done + job.images_failed) / job.images_total, 4)


class ImageResultSerializer(serializers.ModelSerializer):
    store_id = serializers.CharField(source="visit.store_code")
    visit_time = serializers.DateTimeField(source="visit.visit_time")
    # As submitted: an http(s) URL the submit took, not always an RFC 3986 `uri` (the model's format).
    url = serializers.CharField()

    class Meta:
        model = ImageResult
        fields = list(IMAGE_COLUMNS)
        # Output only: every field is always there (the schema says so).
        extra_kwargs = {name: {"required": True} for name in fields if name not in ("id", "store_id", "visit_time")}


class ImagesQuerySerializer(serializers.Serializer):
    """The query of GET /api/jobs/<id>/images/ besides its cursor (the paginator's) and format."""

    store_id = serializers.CharField(required=False, trim_whitespace=False, help_text="Only this store's images.")
    status = serializers.ChoiceField(
        ImageResult.Status.choices,
        required=False,
        error_messages={"invalid_choice": f"expected one of {', '.join(ImageResult.Status.values)}"},
        help_text="Only images with this status.",
    )
    page_size = serializers.IntegerField(
        required=False,
        min_value=1,
        error_messages={"invalid": "expected a positive integer", "min_value": "expected a positive integer"},
        help_text=f"Images per page (JSON only), {IMAGE_PAGE_SIZE} unless given; a value over {MAX_IMAGE_PAGE_SIZE} "
        f"gives {MAX_IMAGE_PAGE_SIZE}.",
    )


@extend_schema_field(openapi.DATE_TIME_INPUT)
class RFC3339Field(serializers.DateTimeField):
    """A date-time query parameter. A `+` of an offset arrives as a space when the client did not
    encode it (`+05:30` -> ` 05:30`); it is read back as `+`."""

    UNENCODED_PLUS = re.compile(r"(T\d\d:\d\d(?::\d\d(?:\.\d+)?)?) (\d\d:?\d\d)$")

    def __init__(self, **kwargs):
        super().__init__(
            input_formats=DATETIME_FORMATS,
            error_messages={"invalid": "expected an RFC 3339 date-time such as 2024-01-21T16:23:40Z"},
            **kwargs,
        )

    def to_internal_value(self, value):
        if isinstance(value, str):
            value = self.UNENCODED_PLUS.sub(r"\1+\2", value.strip())
        return super().to_internal_value(value)


class VisitsQuerySerializer(serializers.Serializer):
    """The query of GET /api/visits: any of area, storeid, startdate, enddate, at least one."""

    FILTERS = ("area", "storeid", "startdate", "enddate")
    MAX_PAGE_SIZE = 5000

    area = serializers.CharField(required=False, max_length=32, help_text="An area code of the store master.")
    storeid = serializers.CharField(required=False, max_length=64, help_text="A store id of the store master.")
    startdate = RFC3339Field(required=False, help_text="Visits at or after this time.")
    enddate = RFC3339Field(required=False, help_text="Visits at or before this time.")
    cursor = serializers.CharField(required=False, help_text="From the `next` link of the previous page.")
    page_size = serializers.IntegerField(
        required=False, default=1000, min_value=1, max_value=MAX_PAGE_SIZE, help_text="Data points per page."
    )

    def validate_area(self, value: str) -> str:
        if not area_exists(value):
            raise serializers.ValidationError(f"no store in area {value!r}")
        return value

    def validate_storeid(self, value: str) -> str:
        if not store_exists(value):
            raise serializers.ValidationError(f"store {value!r} is not in the store master")
        return value

    def validate_cursor(self, value: str) -> VisitCursor:
        return decode_cursor(value)

    def validate(self, attrs):
        if not any(name in attrs for name in self.FILTERS):
            raise serializers.ValidationError("give at least one of area, storeid, startdate, enddate")
        if "startdate" in attrs and "enddate" in attrs and attrs["enddate"] < attrs["startdate"]:
            raise serializers.ValidationError({"enddate": "is before startdate"})
        return attrs


def encode_cursor(cursor: VisitCursor) -> str:
    raw = json.dumps([cursor.store_id, cursor.visit_time.isoformat(), cursor.visit_id, cursor.image_id])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(text: str) -> VisitCursor:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        store_id, visit_time, visit_id, image_id = json.loads(raw)
        cursor = VisitCursor(store_id, serializers.DateTimeField().to_internal_value(visit_time), visit_id, image_id)
        if not (isinstance(store_id, str) and isinstance(visit_id, int) and isinstance(image_id, int)):
            raise ValueError
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError, serializers.ValidationError):
        raise serializers.ValidationError("invalid: use the next link of the previous page as it is") from None
    return cursor
