"""Pure rules: no I/O and nothing of ours imported."""
