"""What makes every API answer JSON: the error body, 404 and 500 pages."""

from django.http import JsonResponse
from django.views import defaults
from rest_framework import exceptions
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler

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
    """DRF errors as `{"error": "<message>"}`, the contract's error body."""
    response = exception_handler(exc, context)
    if response is not None and isinstance(exc, exceptions.APIException):
        response.data = {"error": error_message(exc.detail)}
    return response


def not_found(request, exception=None):
    """JSON under /api/ (whatever DEBUG says), Django's page elsewhere (the admin)."""
    if request.path.startswith("/api/"):
        return JsonResponse({"error": f"no such endpoint: {request.method} {request.path}"}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request):
    if request.path.startswith("/api/"):
        return JsonResponse({"error": "internal server error"}, status=500)
    return defaults.server_error(request)
