"""Admission and request limits, shared by the HTTP routes and the live session."""
