"""SMS providers: one small adapter per API, each mapping its answers to an Outcome."""

from __future__ import annotations

from engine.providers.base import Provider
from engine.providers.factory import ProviderConfigError, make_provider

__all__ = ["Provider", "ProviderConfigError", "make_provider"]
