"""``python -m engine`` runs the relaydesk command (how RelayDesk starts its workers)."""

from engine.cli.main import main

main()
