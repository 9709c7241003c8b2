"""The server around the models: cluster graphs (`pipeline`), the HTTP and WebSocket API (`api`),
the trace store (`store`), metrics and traces (`observability`), config and the app builder."""
