"""A quick check, before a campaign is created, that the provider's server answers at all."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from engine.config.masking import mask_url
from engine.config.settings import Settings
from engine.domain.errors import OperatorError
from engine.providers.africastalking import DEFAULT_API_URL as AT_URL
from engine.providers.twilio import DEFAULT_API_URL as TWILIO_URL


class ProviderUnreachable(OperatorError, RuntimeError):
    """The provider's server does not accept connections; the message says which."""


def provider_endpoint(settings: Settings, gateway_url: str | None) -> str | None:
    if settings.sms_provider in ("sandbox", "http"):
        return settings.sms_gateway_url or gateway_url
    if settings.sms_provider == "twilio":
        return settings.twilio_api_url or TWILIO_URL
    return settings.at_api_url or AT_URL


def check_reachable(url: str, timeout_s: float = 5.0) -> None:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ProviderUnreachable(
            f"the SMS gateway at {mask_url(url)} is not reachable ({exc.strerror or exc}); "
            "nothing was created. Start it ('relaydesk gateway') or fix "
            "RELAYDESK_SMS_GATEWAY_URL / the provider settings."
        ) from None


def require_provider(settings: Settings, *, start_gateway: bool) -> None:
    """Fail fast, before anything is created, when the provider cannot be reached (the
    sandbox gateway of this data dir is started first when ``start_gateway``)."""
    from engine.infra.local_gateway import gateway_url

    endpoint = provider_endpoint(settings, gateway_url(settings, start=start_gateway))
    if endpoint:
        check_reachable(endpoint)
