"""Twilio status look-ups for messages with no final report (placeholder: being built)."""

from __future__ import annotations

from engine.pipeline.runtime import Runtime


def poll_due_reports(rt: Runtime) -> int:
    """Look up the messages whose poll is due; how many were looked up."""
    return 0
