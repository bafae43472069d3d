"""Completion callbacks: the signed POST of a finished job's status to the client's `callback_url`.

The POST goes through the image fetcher's guard (jobs/worker/imaging/fetch.py): http(s) only, and unless
RETAILPULSE_FETCH_ALLOW_PRIVATE is set, no loopback, private or other non-public address, checked on
the addresses the connection really uses. Redirects are not followed (a 3xx is a failed attempt).

Receivers check `X-RetailPulse-Signature: sha256=<hex>`, the HMAC-SHA256 of the raw body keyed by
RETAILPULSE_CALLBACK_SECRET, and may use `X-RetailPulse-Delivery` (the same on every attempt of one
delivery) to drop a repeat.
"""

import asyncio
import dataclasses
import hashlib
import hmac

import aiohttp
from django.conf import settings

from jobs.worker import imaging

SIGNATURE_HEADER = "X-RetailPulse-Signature"
DELIVERY_HEADER = "X-RetailPulse-Delivery"
ATTEMPT_HEADER = "X-RetailPulse-Attempt"


def render(body: dict) -> bytes:
    """The bytes GET /api/status answers for the same body (the same renderer)."""
    # Imported here: DRF (and with it psycopg, even on SQLite) would add about 15 MiB to every
    # qcluster process, which otherwise never loads it.
    from rest_framework.renderers import JSONRenderer

    return JSONRenderer().render(body)


def signature(payload: bytes, secret: str | None = None) -> str:
    key = (secret if secret is not None else settings.RETAILPULSE_CALLBACK_SECRET).encode()
    return "sha256=" + hmac.new(key, payload, hashlib.sha256).hexdigest()


def _limits() -> imaging.FetchLimits:
    limits = imaging.FetchLimits.from_settings(settings.RETAILPULSE)
    return dataclasses.replace(limits, total_timeout=settings.RETAILPULSE_CALLBACKS["TIMEOUT"])


async def _post(url: str, payload: bytes, headers: dict[str, str], limits: imaging.FetchLimits) -> None:
    imaging.check_url(url, limits)
    async with (
        imaging.open_session(limits) as session,
        asyncio.timeout(limits.total_timeout),
        session.post(url, data=payload, headers=headers, allow_redirects=False) as response,
    ):
        if not 200 <= response.status < 300:
            raise imaging.ImageError(f"HTTP {response.status}")


def post(url: str, body: dict, *, delivery_id: str, attempt: int) -> str | None:
    """POST the body, signed; None when the receiver answered 2xx, else why not."""
    payload = render(body)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "RetailPulse/1.0 (completion callback)",
        SIGNATURE_HEADER: signature(payload),
        DELIVERY_HEADER: delivery_id,
        ATTEMPT_HEADER: str(attempt),
    }
    limits = _limits()
    try:
        asyncio.run(_post(url, payload, headers, limits))
    except imaging.ImageError as exc:  # a refusal (non-public address) or a non-2xx answer
        return str(exc)
    except TimeoutError:
        return f"timed out after {limits.total_timeout:g} s"
    except aiohttp.ClientConnectorDNSError:
        return "host name not found"
    except aiohttp.ClientConnectorError as exc:
        return f"cannot connect ({exc.os_error.strerror or exc.os_error})"
    except (aiohttp.ClientError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None
