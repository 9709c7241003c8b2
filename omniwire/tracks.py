"""Track ids: `T-{cluster_name}-{32 hex uid}`, one per conversation."""

from __future__ import annotations

import re
import uuid

TRACK_ID_PATTERN = r"^T-([A-Za-z][A-Za-z0-9_]*)-([0-9a-f]{32})$"
_TRACK_ID = re.compile(TRACK_ID_PATTERN)


class TrackIdError(ValueError):
    pass


def new_track_id(cluster: str) -> str:
    return f"T-{cluster}-{uuid.uuid4().hex}"


def parse_track_id(track_id: str) -> tuple[str, str]:
    """(cluster, uid) of a well-formed track id; TrackIdError saying what is wrong otherwise."""
    match = _TRACK_ID.match(track_id)
    if match is None:
        raise TrackIdError(f"malformed track id {track_id!r}: expected 'T-<cluster name>-<32 lowercase hex digits>'")
    return match.group(1), match.group(2)
