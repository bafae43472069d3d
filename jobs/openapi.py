"""The shapes of the API's bodies for the OpenAPI schema (drf-spectacular), where a serializer
cannot say them exactly: the error body, the empty `{}` of an unknown job, the status body whose
`error` list is there only when the job failed; and token authentication as it is configured."""

from django.conf import settings
from drf_spectacular.authentication import TokenScheme
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse

from jobs.models import IDEMPOTENCY_KEY_MAX_LENGTH, Job

ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "string",
            "description": "Each problem with its place, e.g. `visits[3].image_url: expected a non-empty list of URLs`",
        }
    },
    "required": ["error"],
    "additionalProperties": False,
}
EMPTY = {"type": "object", "maxProperties": 0, "description": "No such job: the body is `{}`."}
STORE_ERRORS = {
    "type": "array",
    "description": "One entry per failed store, in visit order.",
    "items": {
        "type": "object",
        "properties": {"store_id": {"type": "string"}, "error": {"type": "string"}},
        "required": ["store_id", "error"],
        "additionalProperties": False,
    },
}
STATUS_BODY = {
    "oneOf": [
        {
            "type": "object",
            "properties": {
                "status": {"type": "string", "enum": [Job.Status.ONGOING.value, Job.Status.COMPLETED.value]},
                "job_id": {"type": "integer"},
            },
            "required": ["status", "job_id"],
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {
                "status": {"type": "string", "enum": [Job.Status.FAILED.value]},
                "job_id": {"type": "integer"},
                "error": STORE_ERRORS,
            },
            "required": ["status", "job_id", "error"],
            "additionalProperties": False,
        },
    ]
}
JOB_CREATED = {
    "type": "object",
    "properties": {"job_id": {"type": "integer"}},
    "required": ["job_id"],
    "additionalProperties": False,
}
VISITS_BODY = {
    "type": "object",
    "properties": {
        "results": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "store_id": {"type": "string"},
                    "area": {"type": "string"},
                    "store_name": {"type": "string"},
                    "data": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "date": {"type": "string", "format": "date-time", "description": "the visit time"},
                                "perimeter": {"type": "integer"},
                            },
                            "required": ["date", "perimeter"],
                            "additionalProperties": False,
                        },
                    },
                },
                "required": ["store_id", "area", "store_name", "data"],
                "additionalProperties": False,
            },
        },
        "next": {
            "type": "string",
            "nullable": True,
            "format": "uri",
            "description": "The next page, or null on the last one. A store whose data goes on there "
            "appears again at the top of it.",
        },
    },
    "required": ["results", "next"],
    "additionalProperties": False,
}
IMAGE_COUNTS = {
    "type": "object",
    "properties": {name: {"type": "integer"} for name in ("total", "done", "failed", "pending")},
    "required": ["total", "done", "failed", "pending"],
    "additionalProperties": False,
}
# The routes matched with and without a trailing slash, documented as the contract names them.
SLASH_OPTIONAL = {"/api/submit/", "/api/status/", "/api/visits/"}


def contract_paths(result, generator, request, public):
    """drf-spectacular postprocessing hook: `/api/status/` (regex `^api/status/?$`) as `/api/status`."""
    result["paths"] = {(p[:-1] if p in SLASH_OPTIONAL else p): item for p, item in result["paths"].items()}
    return result


class OptionalTokenScheme(TokenScheme):
    """`Authorization: Token <key>` as configured: required with RETAILPULSE_API_TOKENS=1, and
    optional (the empty requirement) when tokens are off, as OptionalTokenAuthentication is."""

    target_class = "jobs.access.OptionalTokenAuthentication"
    priority = 1

    def get_security_requirement(self, auto_schema):
        token = {self.name: []}
        return [token] if settings.RETAILPULSE["API_TOKENS"] else [{}, token]


def error(description: str) -> OpenApiResponse:
    return OpenApiResponse(ERROR, description=description)


IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    description=f"At most {IDEMPOTENCY_KEY_MAX_LENGTH} characters. A submit repeated with the same key and body "
    "answers the first one's job id (201, `Idempotent-Replayed: true`) instead of creating another job; "
    "the same key with another body is a 422.",
)
JOBID = OpenApiParameter("jobid", int, OpenApiParameter.QUERY, required=True, description="The job id.")
IMAGE_FORMAT = OpenApiParameter(
    "format",
    str,
    OpenApiParameter.QUERY,
    enum=["json", "csv"],
    description="`csv` streams every matching image (no pages); the default is JSON pages.",
)
SUBMIT_EXAMPLE = OpenApiExample(
    "two visits",
    value={
        "count": 2,
        "visits": [
            {
                "store_id": "S00339218",
                "image_url": ["https://www.gstatic.com/webp/gallery/2.jpg"],
                "visit_time": "2024-01-21T16:23:40Z",
            },
            {
                "store_id": "S01408764",
                "image_url": ["https://www.gstatic.com/webp/gallery/3.jpg"],
                "visit_time": "2024-01-21T16:23:40Z",
            },
        ],
        "callback_url": "https://client.example.com/retailpulse/done",
    },
    request_only=True,
)
