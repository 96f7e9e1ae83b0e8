"""Build the configured provider from the settings."""

from __future__ import annotations

from engine.config.settings import Settings
from engine.domain.errors import OperatorError
from engine.providers.africastalking import AfricasTalkingProvider
from engine.providers.base import Provider
from engine.providers.generic_http import HttpJsonProvider
from engine.providers.http_client import http_client
from engine.providers.sandbox import SandboxProvider
from engine.providers.twilio import STATUS_POOL_SIZE, TwilioProvider, status_callback_url


class ProviderConfigError(OperatorError, ValueError):
    """The provider settings are incomplete; the message names what is missing."""


def _require(settings: Settings, *names: str) -> None:
    missing = [n for n in names if not getattr(settings, n.removeprefix("RELAYDESK_").lower())]
    if missing:
        raise ProviderConfigError(
            f"RELAYDESK_SMS_PROVIDER={settings.sms_provider} needs {', '.join(missing)}; set them "
            "in the environment, the env file or the config file")


def make_provider(settings: Settings, gateway_url: str | None = None) -> Provider:
    """``gateway_url`` is where the sandbox runs when RelayDesk started it itself."""
    http = http_client(settings.provider_timeout_s, settings.send_concurrency)
    if settings.inspector_on:  # development only: provider calls for the Inspector page
        from engine.monitoring.inspector import watch_http

        watch_http(settings)
    kind = settings.sms_provider
    if kind == "sandbox":
        url = settings.sms_gateway_url or gateway_url
        if not url:
            raise ProviderConfigError("the sandbox gateway is not running: start it with "
                                      "'relaydesk gateway' or set RELAYDESK_SMS_GATEWAY_URL")
        return SandboxProvider(url, http)
    if kind == "http":
        _require(settings, "RELAYDESK_SMS_GATEWAY_URL")
        return HttpJsonProvider(settings.sms_gateway_url or "", http,
                                settings.sms_http_body_template, settings.sms_http_auth_header)
    if kind == "twilio":
        _require(settings, "RELAYDESK_TWILIO_ACCOUNT_SID", "RELAYDESK_TWILIO_AUTH_TOKEN",
                 "RELAYDESK_TWILIO_FROM")
        return TwilioProvider(settings.twilio_account_sid or "", settings.twilio_auth_token or "",
                              settings.twilio_from or "", http, settings.twilio_api_url,
                              status_callback=status_callback_url(settings.public_url),
                              status_http=http_client(settings.provider_timeout_s,
                                                      STATUS_POOL_SIZE, purpose="status"))
    _require(settings, "RELAYDESK_AT_USERNAME", "RELAYDESK_AT_API_KEY")
    return AfricasTalkingProvider(settings.at_username or "", settings.at_api_key or "", http,
                                  settings.at_sender_id, settings.at_api_url)
