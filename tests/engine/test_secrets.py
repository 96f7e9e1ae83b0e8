"""Secrets in URLs (passwords, query values such as ``?api_key=``) are masked wherever a URL
is shown: ``relaydesk settings``, the Settings page, connection-check errors, the inspector
and error texts; a form that shows the masked URL keeps the real values when saved."""

from __future__ import annotations

import json
import time

import pytest

from engine.config.masking import (
    mask_url,
    mask_urls_in_text,
    restore_masked_url,
    scrub_url_secrets,
    still_masked,
)
from engine.config.settings import load_settings
from engine.config.settings_store import editable_fields, save
from engine.infra.embedded_redis import free_port
from engine.infra.inspector_store import safe_text
from engine.operations.connection_checks import check_provider, check_redis
from tests.support import run_cli

GATEWAY = "https://gw.example/send?api_key=gw-key-0451&sender=RelayDesk#tok-9981"


@pytest.mark.parametrize(("url", "shown"), [
    (GATEWAY, "https://gw.example/send?api_key=****&sender=****#****"),
    ("https://gw.example/send?s3cret-bare-token", "https://gw.example/send?****"),
    ("redis://:pw-4242@127.0.0.1:6379/0?db=2", "redis://:****@127.0.0.1:6379/0?db=2"),
    ("postgresql://app:pw@db/relaydesk?sslmode=require&password=pg-4242",
     "postgresql://app:****@db/relaydesk?sslmode=require&password=****"),
    ("redis://localhost:6379/0", "redis://localhost:6379/0"),
    ("https://gw.example/send?empty=", "https://gw.example/send?empty="),
    # Written exactly as given otherwise (urlunsplit would drop a SQLite URL's slashes).
    ("sqlite:///relaydesk.db", "sqlite:///relaydesk.db"),
    ("sqlite:////var/lib/relaydesk/relaydesk.db?mode=ro",
     "sqlite:////var/lib/relaydesk/relaydesk.db?mode=****"),
    ("sqlite://", "sqlite://"),
    ("redis://:pw-4242@[::1]:6379", "redis://:****@[::1]:6379"),
])
def test_mask_url_masks_passwords_query_values_and_fragments(url: str, shown: str) -> None:
    assert mask_url(url) == shown
    assert restore_masked_url(shown, url) == url  # kept as shown: nothing lost on save


def test_restoring_keeps_what_the_operator_changed() -> None:
    shown = mask_url(GATEWAY)
    changed = shown.replace("api_key=****", "api_key=new-key-77")
    assert restore_masked_url(changed, GATEWAY) == (
        "https://gw.example/send?api_key=new-key-77&sender=RelayDesk#tok-9981")
    # Another server never gets the secrets in force: they stay masked, and saving says so.
    moved = shown.replace("gw.", "gw2.")
    assert restore_masked_url(moved, GATEWAY) == moved
    assert still_masked(moved)
    assert not still_masked(restore_masked_url(shown, GATEWAY))
    repeated = "https://gw/x?k=one-1111&k=two-2222"
    assert restore_masked_url(mask_url(repeated), repeated) == repeated
    # A masked value the setting in force does not have stays masked: never invented.
    assert restore_masked_url("https://gw/x?other=****", GATEWAY) == "https://gw/x?other=****"


def test_error_texts_lose_every_spelling_of_a_url_secret() -> None:
    url = "https://gw.example/send?api_key=a%2Fb%2Bc-0451&to=x"
    for text in ("Failed to parse: https://gw.example/send?api_key=a%2Fb%2Bc-0451&to=x",
                 "Max retries exceeded with url: /send?api_key=a%2Fb%2Bc-0451",
                 "server said: bad key a/b+c-0451"):
        scrubbed = scrub_url_secrets(text, url)
        assert "0451" not in scrubbed, scrubbed
    assert (mask_urls_in_text("GET /send?token=t-1234&x=1 (ok?)")
            == "GET /send?token=****&x=**** (ok?)")


def test_masking_text_stays_linear() -> None:
    """A long error or payload (the inspector keeps 2,000 characters, Sentry more) costs
    time in proportion to its length: ten times the text, about ten times the work."""
    def cost(n: int) -> float:
        texts = ["a" * n, "x?" * n, "1 " * n, "?a=" * n]
        start = time.perf_counter()
        for text in texts:
            mask_urls_in_text(text)
        return time.perf_counter() - start

    cost(1000)  # warm up
    assert cost(100_000) / max(cost(10_000), 1e-6) < 40  # quadratic would be ~100


def test_relaydesk_settings_never_shows_a_query_secret() -> None:
    env = {"RELAYDESK_SMS_PROVIDER": "http", "RELAYDESK_SMS_GATEWAY_URL": GATEWAY,
           "RELAYDESK_REDIS_URL": "redis://127.0.0.1:6390/0?password=redis-pw-0451"}
    for args in (("settings",), ("settings", "--json")):
        result = run_cli(*args, env=env)
        assert result.returncode == 0, result.stderr
        for secret in ("gw-key-0451", "tok-9981", "redis-pw-0451"):
            assert secret not in result.stdout + result.stderr
    shown = json.loads(run_cli("settings", "--json", env=env).stdout)
    assert shown["RELAYDESK_SMS_GATEWAY_URL"] == (
        "https://gw.example/send?api_key=****&sender=****#****")


def test_settings_page_shows_masked_and_saves_the_real_value() -> None:
    save({"RELAYDESK_SMS_GATEWAY_URL": GATEWAY})
    shown = editable_fields()["RELAYDESK_SMS_GATEWAY_URL"].value
    assert "gw-key-0451" not in shown
    save({"RELAYDESK_SMS_GATEWAY_URL": shown})  # saved as the form showed it
    assert load_settings().sms_gateway_url == GATEWAY


def test_connection_errors_never_show_a_query_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    redis_url = f"redis://127.0.0.1:{port}/0?password=redis-pw-0451"
    result = check_redis(redis_url, load_settings())
    assert not result.ok
    assert "redis-pw-0451" not in repr(result)
    unparsable = check_redis("redis://127.0.0.1:99999/0?password=redis-pw-0451",
                             load_settings())
    assert not unparsable.ok
    assert "redis-pw-0451" not in repr(unparsable)
    monkeypatch.setenv("RELAYDESK_SMS_PROVIDER", "http")
    for url in (f"http://127.0.0.1:{port}/send?api_key=gw-key-0451",
                "http://127.0.0.1:99999/send?api_key=gw-key-0451",
                "http://bad host/send?api_key=gw-key-0451"):
        monkeypatch.setenv("RELAYDESK_SMS_GATEWAY_URL", url)
        result = check_provider(load_settings())
        assert not result.ok
        assert "gw-key-0451" not in repr(result), result


def test_inspector_texts_lose_url_credentials() -> None:
    body = '{"callback": "https://me.example/dlr?token=cb-token-0451", "to": "+254712345678"}'
    kept = safe_text(body)
    assert "cb-token-0451" not in kept
    assert "712345678" not in kept
    assert "https://me.example/dlr?token=****" in kept
