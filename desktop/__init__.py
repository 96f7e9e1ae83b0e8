"""RelayDesk desktop console (PySide6). Talks to the engine only."""
