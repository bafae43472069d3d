from rest_framework.parsers import JSONParser


class AnyContentTypeJSONParser(JSONParser):
    """Reads the body as JSON whatever Content-Type the client sent (curl -d sends a form type)."""

    media_type = "*/*"
