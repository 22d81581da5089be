"""TherapyBridge's shared library: event contracts, settings, broker and DB wiring,
blob storage, audio I/O, resilience and telemetry. Nothing service-specific."""
