"""What listens on the port: the FastAPI ingress, live WebSocket sessions, the OpenAI-compatible
routes and the trace pages."""
