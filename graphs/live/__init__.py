"""A live conversation over a WebSocket: segmenting speech, judging the end of a turn, speculative
turns, barge-in and playout. The ingress mounts it; it knows nothing of HTTP routes."""
