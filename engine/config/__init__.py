"""Settings, the config file and masking of secrets."""
