"""Who may call the API and how often. Both read settings per request, so they can be switched on
without a code change: RETAILPULSE_API_TOKENS=1 and the RETAILPULSE_THROTTLE_* rates."""

from django.conf import settings
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission
from rest_framework.throttling import SimpleRateThrottle

from jobs.services.clients import KeyCheck, check_key


class ClientKeyAuthentication(BaseAuthentication):
    """`Authorization: Token <key>`, one of the client's API keys, when tokens are on; ignored (no
    401 for a stray header) when off."""

    keyword = "Token"

    def authenticate(self, request):
        if not settings.RETAILPULSE["API_TOKENS"]:
            return None
        words = get_authorization_header(request).split()
        if not words or words[0].lower() != self.keyword.lower().encode():
            return None
        if len(words) != 2:
            raise AuthenticationFailed("invalid Authorization header: send Authorization: Token <key>")
        check, key = check_key(presented=words[1].decode(errors="replace"))
        if check is not KeyCheck.VALID or key is None:
            raise AuthenticationFailed(check.value)
        return key.client, key

    def authenticate_header(self, request) -> str:
        return self.keyword


class TokenRequiredIfEnabled(BasePermission):
    message = "authentication required: send Authorization: Token <key>"

    def has_permission(self, request, view) -> bool:
        return not settings.RETAILPULSE["API_TOKENS"] or bool(request.user and request.user.is_authenticated)


class ScopedThrottle(SimpleRateThrottle):
    """Requests per client (token user, else IP address) for views with `throttle_scope` set.

    Counted in the default cache, which is per process: with N web processes a client gets up to
    N times the rate. Point CACHES at Redis for one shared count.
    """

    def allow_request(self, request, view) -> bool:
        self.scope = getattr(view, "throttle_scope", None)
        self.rate = settings.RETAILPULSE["THROTTLE_RATES"].get(self.scope) if self.scope else None
        if not self.rate:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_rate(self):
        return None  # set per request in allow_request

    def get_cache_key(self, request, view) -> str:
        user = request.user
        ident = user.pk if user and user.is_authenticated else self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}
