"""Redis, Celery, the embedded server, the local gateway and the processes RelayDesk starts."""
