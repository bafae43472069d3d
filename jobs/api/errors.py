"""What makes every API answer JSON: the error body, 400, 404 and 500 pages."""

from django.http import Http404, JsonResponse
from django.views import defaults
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework import exceptions, renderers
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView, exception_handler

MESSAGES_SHOWN = 5


def flatten_errors(detail, path: str = "") -> list[str]:
    """DRF's nested error detail as `visits[3].image_url: message` lines."""
    if isinstance(detail, dict):
        messages = []
        for key, value in detail.items():
            if key == api_settings.NON_FIELD_ERRORS_KEY:
                key_path = path
            elif isinstance(key, int):
                key_path = f"{path}[{key}]"
            else:
                key_path = f"{path}.{key}" if path else str(key)
            messages += flatten_errors(value, key_path)
        return messages
    if isinstance(detail, list):
        return [message for item in detail for message in flatten_errors(item, path)]
    return [f"{path}: {detail}" if path else str(detail)]


def error_message(detail) -> str:
    messages = flatten_errors(detail)
    text = "; ".join(messages[:MESSAGES_SHOWN])
    if len(messages) > MESSAGES_SHOWN:
        text += f"; and {len(messages) - MESSAGES_SHOWN} more problems"
    return text


def error_exception_handler(exc, context):
    """DRF errors as `{"error": "<message>"}`, the contract's error body; Django's Http404 too (DRF's
    format negotiation raises it for an unknown `?format=`), which DRF answers as its NotFound."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(*exc.args)
    response = exception_handler(exc, context)
    if response is not None and isinstance(exc, exceptions.APIException):
        response.data = {"error": error_message(exc.detail)}
    return response


class JSONErrorsAndMetadata(APIView):
    """For a view whose own answers are not JSON (CSV, the schema's YAML, Swagger UI's page): its
    errors and OPTIONS metadata are JSON all the same, whatever format the client asked for (or
    when no renderer could be agreed on)."""

    def finalize_response(self, request, response, *args, **kwargs):
        if isinstance(response, Response) and (response.exception or request.method == "OPTIONS"):
            request.accepted_renderer, request.accepted_media_type = renderers.JSONRenderer(), "application/json"
        return super().finalize_response(request, response, *args, **kwargs)


class SchemaView(JSONErrorsAndMetadata, SpectacularAPIView):
    pass


class DocsView(JSONErrorsAndMetadata, SpectacularSwaggerView):
    pass


def not_found(request, exception=None):
    """JSON under /api/ (whatever DEBUG says), Django's page elsewhere (the admin)."""
    if request.path.startswith("/api/"):
        return JsonResponse({"error": f"no such endpoint: {request.method} {request.path}"}, status=404)
    return defaults.page_not_found(request, exception)


def bad_request(request, exception):
    """What Django refuses before a view answers (a Host not allowed, too many query parameters),
    named by its kind only, as Django's own page does not show the details."""
    if request.path.startswith("/api/"):
        return JsonResponse({"error": f"bad request ({type(exception).__name__})"}, status=400)
    return defaults.bad_request(request, exception)


def server_error(request):
    if request.path.startswith("/api/"):
        return JsonResponse({"error": "internal server error"}, status=500)
    return defaults.server_error(request)
