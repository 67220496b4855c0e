"""The Bedrock emulator's wire format, checked with botocore's own signer and decoder.

Needs `BEDROCK_EMULATOR_BIN` pointing at a built `bedrock-emulator` binary.
"""

import http.client
import json
import os
import re
import subprocess
import threading
import urllib.parse
from pathlib import Path

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import EventStreamBuffer

ACCESS_KEY_ID = "AKIAWIRETEST00000001"
SECRET_ACCESS_KEY = "wire-test-secret"
SESSION_TOKEN = "wire-test-session-token"
REGION = "us-east-1"
PROFILE_PATH = "/model/us.anthropic.claude-3-5-sonnet-20240620-v1%3A0"


@pytest.fixture(scope="module")
def emulator_url():
    binary = os.environ.get("BEDROCK_EMULATOR_BIN")
    if not binary or not Path(binary).is_file():
        pytest.fail("BEDROCK_EMULATOR_BIN must point at a built bedrock-emulator binary")
    process = subprocess.Popen(
        [
            binary,
            "--listen", "127.0.0.1:0",
            "--access-key-id", ACCESS_KEY_ID,
            "--secret-access-key", SECRET_ACCESS_KEY,
            "--session-token", SESSION_TOKEN,
            "--region", REGION,
            "--workers", "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    found = {}

    def read_ready_line():
        for line in process.stdout:
            match = re.search(r"listening on (http://\S+)", line)
            if match:
                found["url"] = match.group(1)
                return

    reader = threading.Thread(target=read_ready_line, daemon=True)
    reader.start()
    reader.join(timeout=30)
    try:
        if "url" not in found:
            pytest.fail("the emulator did not print its listening line")
        yield found["url"]
    finally:
        process.terminate()
        assert process.wait(timeout=20) == 0


def signed_request(url, path, body, secret=SECRET_ACCESS_KEY, token=SESSION_TOKEN):
    request = AWSRequest(
        method="POST",
        url=url + path,
        data=body,
        headers={"Content-Type": "application/json", "Accept": "application/vnd.amazon.eventstream"},
    )
    SigV4Auth(Credentials(ACCESS_KEY_ID, secret, token), "bedrock", REGION).add_auth(request)
    return request


def send(url, request):
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    connection.request(
        request.method,
        urllib.parse.urlsplit(request.url).path,
        body=request.body,
        headers=dict(request.headers.items()),
    )
    response = connection.getresponse()
    payload = response.read()
    connection.close()
    return response, payload


def converse_stream(url, text, **signing):
    body = json.dumps({"messages": [{"role": "user", "content": [{"text": text}]}]}).encode()
    return send(url, signed_request(url, PROFILE_PATH + "/converse-stream", body, **signing))


def decode(raw):
    buffer = EventStreamBuffer()
    buffer.add_data(raw)
    frames = []
    for message in buffer:
        payload = json.loads(message.payload)
        payload.pop("p", None)
        frames.append((dict(message.headers), payload))
    return frames


def event(event_type, payload):
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return headers, payload


def test_converse_stream_frames(emulator_url):
    response, raw = converse_stream(emulator_url, "wire  check")
    assert response.status == 200
    assert response.getheader("Content-Type") == "application/vnd.amazon.eventstream"
    assert response.getheader("Transfer-Encoding") == "chunked"
    assert response.getheader("x-amzn-RequestId")
    frames = decode(raw)
    metadata_headers, metadata = frames[-1]
    assert metadata["metrics"]["latencyMs"] >= 0
    assert frames == [
        event("messageStart", {"role": "assistant"}),
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Echo: "}}),
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "wire  "}}),
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "check"}}),
        event("contentBlockStop", {"contentBlockIndex": 0}),
        event("messageStop", {"stopReason": "end_turn"}),
        event(
            "metadata",
            {
                "usage": {"inputTokens": 2, "outputTokens": 3, "totalTokens": 5},
                "metrics": {"latencyMs": metadata["metrics"]["latencyMs"]},
            },
        ),
    ]


def test_exception_frame_mid_stream(emulator_url):
    response, raw = converse_stream(
        emulator_url, "one two three [[emu:stream-error=modelStreamErrorException after=2]]"
    )
    assert response.status == 200
    frames = decode(raw)
    assert frames[:3] == [
        event("messageStart", {"role": "assistant"}),
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Echo: "}}),
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "one "}}),
    ]
    assert len(frames) == 4, "the response ends after the exception"
    headers, payload = frames[3]
    assert headers == {
        ":exception-type": "modelStreamErrorException",
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    assert payload["message"] == "The model stream was interrupted."
    assert payload["originalStatusCode"] == 500


def test_throttling_exception_frame(emulator_url):
    _, raw = converse_stream(emulator_url, "x [[emu:stream-error=throttlingException]]")
    frames = decode(raw)
    assert [headers.get(":event-type") or headers[":exception-type"] for headers, _ in frames] == [
        "messageStart",
        "throttlingException",
    ]


def test_scripted_http_error_before_the_stream(emulator_url):
    response, raw = converse_stream(emulator_url, "[[emu:error=ServiceUnavailableException]]")
    assert response.status == 503
    assert response.getheader("x-amzn-ErrorType").split(":")[0] == "ServiceUnavailableException"
    assert json.loads(raw)["message"]


def test_bad_signature_is_rejected(emulator_url):
    response, raw = converse_stream(emulator_url, "hello", secret="not-the-secret")
    assert response.status == 403
    assert response.getheader("x-amzn-ErrorType").split(":")[0] == "InvalidSignatureException"
    assert json.loads(raw)["message"].startswith(
        "The request signature we calculated does not match the signature you provided."
    )


def test_tampered_body_is_rejected(emulator_url):
    body = json.dumps({"messages": [{"role": "user", "content": [{"text": "hello"}]}]}).encode()
    request = signed_request(emulator_url, PROFILE_PATH + "/converse", body)
    request.data = body.replace(b"hello", b"HELLO")
    response, _ = send(emulator_url, request)
    assert response.status == 403
    assert response.getheader("x-amzn-ErrorType").startswith("InvalidSignatureException:")


def test_wrong_session_token_is_unrecognized(emulator_url):
    response, raw = converse_stream(emulator_url, "hello", token="another-token")
    assert response.status == 403
    assert response.getheader("x-amzn-ErrorType").split(":")[0] == "UnrecognizedClientException"
    assert json.loads(raw)["message"] == "The security token included in the request is invalid."


def test_observations_record_requests_and_identity(emulator_url):
    converse_stream(emulator_url, "counted")
    parts = urllib.parse.urlsplit(emulator_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    connection.request("GET", "/_emulator/observations")
    observed = json.loads(connection.getresponse().read())
    connection.close()
    stream = observed["operations"]["ConverseStream"]
    assert stream["requests"] >= 1
    assert stream["lastAccessKeyId"] == ACCESS_KEY_ID
    assert observed["lastSessionToken"] == SESSION_TOKEN
