"""``relaydesk receiver``: the HTTP endpoint for providers' delivery reports and replies."""

from __future__ import annotations

import click

from engine.cli.common import AppContext, pass_app
from engine.config.masking import MASK
from engine.providers.callbacks import (
    DEFAULT_PORT,
    TOKEN_ROUTES,
    TWILIO_INBOUND_PATH,
    TWILIO_STATUS_PATH,
)


def describe(host: str, port: int) -> str:
    """The one line printed once listening: where, and the callback URLs' shapes (the
    token masked: the console's Settings page shows it to the operator)."""
    base = f"http://{host}:{port}"
    shapes = [TWILIO_STATUS_PATH, TWILIO_INBOUND_PATH] + [
        f"/callbacks/{provider}/{MASK}/{{{','.join(kinds)}}}"
        for provider, kinds in TOKEN_ROUTES.items()]
    return f"receiver listening on {base} (callbacks: {' '.join(shapes)})"


@click.command("receiver")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: every interface, e.g. behind a proxy).")
@click.option("--port", type=click.IntRange(0, 65535),
              help=f"Port to listen on; 0 picks a free one [default: RELAYDESK_RECEIVER_PORT, "
                   f"else {DEFAULT_PORT}].")
@pass_app
def receiver_cmd(app: AppContext, host: str, port: int | None) -> None:
    """Receive delivery reports, replies and opt-outs from the SMS provider (until Ctrl+C).

    Reports are queued in Redis and applied by the workers; start Redis first
    ('relaydesk redis' or 'relaydesk supervise')."""
    from engine.pipeline.receiver import run_receiver  # tornado: only for this command

    settings = app.settings
    chosen = port if port is not None else settings.receiver_port or DEFAULT_PORT
    try:
        run_receiver(settings, host, chosen,
                     ready=lambda bound: click.echo(describe(host, bound)))
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{chosen} ({exc.strerror or exc}); choose another "
            "port with --port or RELAYDESK_RECEIVER_PORT") from None
