"""RelayDesk engine: everything that is not the desktop UI. Never imports Qt."""

__version__ = "0.1.0"
