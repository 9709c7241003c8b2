"""Ray Serve metrics and OpenTelemetry export of tracks."""
