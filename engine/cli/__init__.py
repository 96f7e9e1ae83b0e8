"""The relaydesk commands (the console adds `gui` from desktop/cli.py)."""
