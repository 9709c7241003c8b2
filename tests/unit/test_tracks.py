import pytest

from omniwire.tracks import TrackIdError, new_track_id, parse_track_id


def test_new_track_ids_round_trip_and_are_unique():
    a, b = new_track_id("CLUSTER_HF_ETE_CONVERSATION"), new_track_id("CLUSTER_HF_ETE_CONVERSATION")
    assert a != b
    cluster, uid = parse_track_id(a)
    assert cluster == "CLUSTER_HF_ETE_CONVERSATION"
    assert len(uid) == 32 and int(uid, 16) >= 0
    assert a == f"T-{cluster}-{uid}"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "T-CLUSTER_HF_ETE_CONVERSATION",
        "T-CLUSTER_HF_ETE_CONVERSATION-123",
        "T-CLUSTER_HF_ETE_CONVERSATION-" + "G" * 32,
        "T-CLUSTER_HF_ETE_CONVERSATION-" + "A" * 32,  # uppercase hex is not what the server issues
        "X-CLUSTER_HF_ETE_CONVERSATION-" + "a" * 32,
        "T--" + "a" * 32,
        "T-CLUSTER-HF-" + "a" * 32,
    ],
)
def test_malformed_track_ids_are_rejected_with_the_expected_shape(bad):
    with pytest.raises(TrackIdError, match=r"expected 'T-<cluster name>-<32 lowercase hex digits>'"):
        parse_track_id(bad)
