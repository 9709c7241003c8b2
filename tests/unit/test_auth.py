"""Who may listen where without a key; how a request carries the key."""

import base64

import pytest

from graphs.api.auth import KEY_ENV, ExposureError, _presented, check_exposure, websocket_subprotocol


def test_without_a_key_only_localhost_may_listen(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    assert "every route is open" in check_exposure("127.0.0.1", allow_unauthenticated=False)
    with pytest.raises(ExposureError, match=f"'0.0.0.0'.*{KEY_ENV}.*allow_unauthenticated"):
        check_exposure("0.0.0.0", allow_unauthenticated=False)
    assert "every route is open" in check_exposure("0.0.0.0", allow_unauthenticated=True)


def test_with_a_key_any_host_may_listen_quietly(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "k")
    assert check_exposure("0.0.0.0", allow_unauthenticated=False) is None


def scope(kind="http", headers=(), subprotocols=()):
    return {"type": kind, "headers": [(k.encode(), v.encode()) for k, v in headers], "subprotocols": list(subprotocols)}


def test_the_key_is_read_from_each_way_a_client_can_send_it():
    basic = base64.b64encode(b":s3cret").decode()
    assert _presented(scope(headers=[("authorization", "Bearer s3cret")])) == "s3cret"
    assert _presented(scope(headers=[("authorization", f"Basic {basic}")])) == "s3cret"
    assert _presented(scope(headers=[("cookie", "omniserve_key=s3cret; other=1")])) == "s3cret"
    offered = ["json", "omniserve.bearer.s3cret"]
    assert _presented(scope("websocket", subprotocols=offered)) == "s3cret"
    assert websocket_subprotocol(offered) == "omniserve.bearer.s3cret"
    assert _presented(scope(subprotocols=offered)) is None, "a subprotocol is a WebSocket's way only"
    assert _presented(scope(headers=[("authorization", "Basic !!!")])) == ""
    assert _presented(scope()) is None
