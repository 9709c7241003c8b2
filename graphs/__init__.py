"""Cluster graphs, the HTTP ingress, the trace store and the app builder."""
