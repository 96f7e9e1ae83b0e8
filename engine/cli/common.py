"""What every ``relaydesk`` subcommand shares: the lazily loaded settings and database."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import click

from engine.config.data_dir import open_data_dir
from engine.config.settings import Settings, load_settings, parse_duration
from engine.store.db import Database, open_database


@dataclass
class AppContext:
    overrides: dict[str, str] = field(default_factory=dict)

    @cached_property
    def settings(self) -> Settings:
        from engine.monitoring.telemetry import init_sentry

        settings = load_settings(self.overrides)
        open_data_dir(settings.data_dir)  # before anything is written there; private
        init_sentry(settings, "cli")
        return settings

    @cached_property
    def db(self) -> Database:
        return open_database(self.settings)

    @cached_property
    def redis(self) -> Any:
        """A Redis client (starting the embedded server if needed), Celery pointed at it."""
        from engine.infra.connections import WORK, celery_for, redis_for
        from engine.infra.embedded_redis import redis_url

        url = redis_url(self.settings, start=True)
        celery_for(url)
        return redis_for(url, WORK)


pass_app = click.make_pass_decorator(AppContext)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def duration(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    """A click callback: ``90s``, ``15m``, ``24h`` or ``30d`` as whole seconds."""
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(f"{exc} (you gave {value!r})") from None


def json_option(func: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(func)
