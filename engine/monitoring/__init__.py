"""Read-side views of the queues, workers, metrics and the inspector; Sentry telemetry."""
