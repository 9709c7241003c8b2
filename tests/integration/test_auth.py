"""The shared server runs with OMNISERVE_API_KEY: every route but /healthz and /login refuses a request
without the key or with a wrong one, and takes the right one, however the client can send it."""

import base64
import json
import re
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from graphs.api.http_app import all_routes
from graphs.app import build_app  # noqa: F401  (registers every route on the app)
from tests.integration.conftest import API_KEY, AUTH

OPEN = {"/healthz", "/login"}
CLUSTER = "CLUSTER_Q_NO_EMOTION_ETE_CONVERSATION"
SAMPLE = {
    "track_id": f"T-{CLUSTER}-{'0' * 32}",
    "audio_id": "0" * 32,
    "cluster": CLUSTER,
    "name": "track.js",
}


def concrete(path: str) -> str:
    return re.sub(r"{(\w+)(:\w+)?}", lambda m: SAMPLE[m.group(1)], path)


ROUTES = all_routes()
HTTP_ROUTES = sorted(
    {(method, r.path) for r in ROUTES if getattr(r, "methods", None) for method in r.methods}
    - {("HEAD", r.path) for r in ROUTES}
    - {("POST", "/login")}  # its 401 is about the key typed into the form: see the login test
)
WEBSOCKETS = sorted(r.path for r in ROUTES if isinstance(r, APIWebSocketRoute))
KEYS = {"no key": {}, "wrong key": {"Authorization": "Bearer not-the-key"}, "right key": AUTH}


def test_every_route_is_in_the_matrix():
    assert len(HTTP_ROUTES) >= 20 and WEBSOCKETS == ["/v1/conversations/ws"]
    assert any(isinstance(r, APIRoute) and r.path == "/v1/tracks/{track_id}" for r in ROUTES)


@pytest.mark.parametrize("who", KEYS)
@pytest.mark.parametrize("method,path", HTTP_ROUTES)
def test_http_routes_need_the_key(server, method, path, who):
    response = httpx.request(method, server.url + concrete(path), headers=KEYS[who], timeout=60)
    if path in OPEN or who == "right key":
        assert response.status_code != 401, response.text
    else:
        assert response.status_code == 401, response.text
        message = json.dumps(response.json())
        assert ("missing API key" if who == "no key" else "wrong API key") in message
        assert API_KEY not in message


def test_pages_ask_a_browser_for_the_key_and_take_it_as_a_basic_password(server):
    refused = httpx.get(f"{server.url}/tracks")
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic")
    basic = base64.b64encode(f"anyone:{API_KEY}".encode()).decode()
    page = httpx.get(f"{server.url}/tracks", headers={"Authorization": f"Basic {basic}"})
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"


def test_the_login_form_sets_an_httponly_cookie_that_opens_the_pages(server):
    wrong = httpx.post(f"{server.url}/login", data={"key": "nope", "next": "/tracks"})
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
    signed_in = httpx.post(f"{server.url}/login", data={"key": API_KEY, "next": "//evil.example/"})
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/tracks", "never off this server"
    cookie = signed_in.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    with httpx.Client(base_url=server.url, cookies=signed_in.cookies) as browser:
        assert browser.get("/tracks").status_code == 200
        assert browser.get("/v1/tracks").status_code == 200


def ws_url(server) -> str:
    return server.url.replace("http://", "ws://") + "/v1/conversations/ws"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-the-key"}], ids=["no key", "wrong key"])
def test_a_websocket_without_the_key_is_closed_before_any_work(server, headers):
    with connect(ws_url(server), additional_headers=headers) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            ws.send(json.dumps({"type": "StartFrame", "cluster": CLUSTER}))
            ws.recv(timeout=30)
    assert closed.value.rcvd.code == 1008 and "API key" in closed.value.rcvd.reason


@pytest.mark.parametrize("how", ["header", "subprotocol"])
def test_a_websocket_takes_the_key_as_a_header_or_as_a_browsers_subprotocol(server, how):
    options = {"additional_headers": AUTH} if how == "header" else {"subprotocols": [f"omniserve.bearer.{API_KEY}"]}
    with connect(ws_url(server), **options) as ws:
        ws.send(json.dumps({"type": "StartFrame", "cluster": CLUSTER}))
        assert json.loads(ws.recv(timeout=30))["type"] == "StartFrame"
        if how == "subprotocol":
            assert ws.subprotocol == f"omniserve.bearer.{API_KEY}"


def test_health_is_open(server):
    assert httpx.get(f"{server.url}/healthz").json()["status"] == "ok"


def test_the_key_is_in_no_record_and_no_serve_log(server):
    from bench.speech import speak
    from tests.integration.test_conversation import post

    assert post(server, speak("What is two plus two?"), cluster=CLUSTER).status_code == 200
    database = Path(server.trace_store_url.removeprefix("sqlite:///"))
    assert API_KEY.encode() not in database.read_bytes()
    logs = Path("/tmp/ray/session_latest/logs/serve")
    assert logs.is_dir()
    for log in logs.iterdir():
        assert API_KEY not in log.read_text(errors="replace"), log.name
