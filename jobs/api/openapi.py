"""The shapes of the API's bodies for the OpenAPI schema (drf-spectacular), where a serializer
cannot say them exactly: the error body, the empty `{}` of an unknown job, the status body whose
`error` list is there only when the job failed; and the rules the schema states as they are
configured: token authentication and the size limits of a submit."""

from django.conf import settings
from drf_spectacular.authentication import TokenScheme
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse

from jobs.models import IDEMPOTENCY_KEY_MAX_LENGTH, MAX_JOB_ID, Job

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


def char_class(characters, *, negated: bool = False) -> str:
    """A regex class of these characters (all below U+10000) as `\\uXXXX` ranges, which ECMA,
    Python and Rust regexes read alike (unlike `\\s`, which each defines its own way)."""
    ranges: list[list[int]] = []
    for code in sorted(set(map(ord, characters))):
        if ranges and code == ranges[-1][1] + 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    body = "".join(f"\\u{low:04x}" if low == high else f"\\u{low:04x}-\\u{high:04x}" for low, high in ranges)
    return f"[{'^' if negated else ''}{body}]"


# Every character that str.isspace() or a regex's \s can mean lies below U+10000.
BASIC_MULTILINGUAL_PLANE = "".join(map(chr, range(0x10000)))
# DRF's CharField refuses NUL characters; one that trims whitespace and does not allow blank also
# refuses whitespace alone (as str.strip() sees it). NO_NUL takes no empty string: drf-spectacular
# adds it as a oneOf branch of its own to a field that allows blank.
_NOT_NUL = char_class("\0", negated=True)
NO_NUL = f"^{_NOT_NUL}+$"
_NOT_NUL_OR_SPACE = char_class(chr(0) + "".join(c for c in BASIC_MULTILINGUAL_PLANE if c.isspace()), negated=True)
NOT_BLANK = f"^{_NOT_NUL}*{_NOT_NUL_OR_SPACE}{_NOT_NUL}*$"
JOB_ID = {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_JOB_ID}
# A date-time as RFC 3339 has it, or a date alone (midnight UTC).
DATE_TIME_INPUT = {
    "anyOf": [{"type": "string", "format": "date-time"}, {"type": "string", "format": "date"}],
    "example": "2024-01-21T16:23:40Z",
}
# The routes matched with and without a trailing slash, documented as the contract names them.
SLASH_OPTIONAL = {"/api/submit/", "/api/status/", "/api/visits/"}


def contract_paths(result, generator, request, public):
    """drf-spectacular postprocessing hook: `/api/status/` (regex `^api/status/?$`) as `/api/status`."""
    result["paths"] = {(p[:-1] if p in SLASH_OPTIONAL else p): item for p, item in result["paths"].items()}
    return result


def submit_limits(result, generator, request, public):
    """drf-spectacular postprocessing hook: the most a submit may hold, as RETAILPULSE_MAX_* set it
    where the schema is served (the serializer reads them per request, not as field arguments)."""
    limits = settings.RETAILPULSE
    schemas = result["components"]["schemas"]
    submit = schemas["SubmitJobRequest"]["properties"]
    submit["count"]["maximum"] = submit["visits"]["maxItems"] = limits["MAX_VISITS"]
    schemas["VisitRequest"]["properties"]["image_url"]["maxItems"] = limits["MAX_IMAGES_PER_VISIT"]
    return result


def empty_query_values(result, generator, request, public):
    """drf-spectacular postprocessing hook: an optional query parameter sent empty (`?page_size=`)
    is read as not sent (DRF's serializers, paginator and format negotiation alike)."""
    for path_item in result["paths"].values():
        for operation in path_item.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "query" and not parameter.get("required"):
                    parameter["allowEmptyValue"] = True
    return result


class OptionalTokenScheme(TokenScheme):
    """`Authorization: Token <key>` as configured: required with RETAILPULSE_API_TOKENS=1; with
    tokens off no operation has a security requirement, since ClientKeyAuthentication then reads
    no token (token_security_as_configured drops the scheme itself)."""

    target_class = "jobs.api.access.ClientKeyAuthentication"
    priority = 1

    def get_security_requirement(self, auto_schema):
        return [{self.name: []}] if settings.RETAILPULSE["API_TOKENS"] else None


def token_security_as_configured(result, generator, request, public):
    """drf-spectacular postprocessing hook: with tokens off, no security scheme either (Swagger UI
    would show a lock and an Authorize button for a token nothing reads)."""
    if not settings.RETAILPULSE["API_TOKENS"]:
        result.get("components", {}).pop("securitySchemes", None)
    return result


class CharFieldInput(OpenApiSerializerFieldExtension):
    """What a CharField refuses besides its lengths: NUL characters, and whitespace alone unless it
    allows blank (drf-spectacular states only minLength: 1)."""

    target_class = "rest_framework.fields.CharField"
    match_subclasses = True

    def map_serializer_field(self, auto_schema, direction):
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        if direction == "request" and "pattern" not in schema:
            refuses_blank = self.target.trim_whitespace and not self.target.allow_blank
            schema["pattern"] = NOT_BLANK if refuses_blank else NO_NUL
        return schema


def error(description: str) -> OpenApiResponse:
    return OpenApiResponse(ERROR, description=description)


# Answers any operation can give, whatever it was asked.
ACCESS_ERRORS = {
    (401, "application/json"): error(
        "RETAILPULSE_API_TOKENS=1 and no valid `Authorization: Token <key>` header (WWW-Authenticate: Token)."
    ),
    (429, "application/json"): error("Over the client's RETAILPULSE_THROTTLE_* rate; Retry-After says when to retry."),
}
IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    {"type": "string", "minLength": 1, "maxLength": IDEMPOTENCY_KEY_MAX_LENGTH, "pattern": NOT_BLANK},
    OpenApiParameter.HEADER,
    description=f"At most {IDEMPOTENCY_KEY_MAX_LENGTH} characters, not blank. A submit repeated with the same key "
    "and body answers the first one's job id (201, `Idempotent-Replayed: true`) instead of creating another job; "
    "the same key with another body is a 422.",
)
JOBID = OpenApiParameter(
    "jobid",
    JOB_ID,
    OpenApiParameter.QUERY,
    required=True,
    description="The job id. One that no job has (or could have: 0, negative, beyond 64 bits) answers `400 {}`.",
)
JOB_ID_PATH = OpenApiParameter("job_id", JOB_ID, OpenApiParameter.PATH, description="The job id.")
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
                "store_id": "SAMPLE-00001",
                "image_url": ["https://www.gstatic.com/webp/gallery/2.jpg"],
                "visit_time": "2024-01-21T16:23:40Z",
            },
            {
                "store_id": "SAMPLE-00002",
                "image_url": ["https://www.gstatic.com/webp/gallery/3.jpg"],
                "visit_time": "2024-01-21T16:23:40Z",
            },
        ],
        "callback_url": "https://client.example.com/retailpulse/done",
    },
    request_only=True,
)
