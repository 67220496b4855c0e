"""No credential ever leaves the gateway: not in its log, not in /metrics, not in an answer.

A realistic session runs against gateways that hold API keys (from the key file and the
environment) and AWS credentials with a session token: model listings, chats, streams, tools,
images, structured output, embeddings, wrong and malformed keys, invalid requests, Bedrock
errors before and inside a stream, and a gateway whose AWS secret is wrong, so that Bedrock
(here the emulator, which answers like AWS) refuses its signature with the canonical request
in the message. Then every log line, the metrics page and every answer (bodies and headers)
are searched for each secret.

test_openai_sdk.py::test_keys_and_prompts_never_reach_the_logs covers prompts at the default
log level; test_credentials.py covers the credentials that IRSA, Pod Identity and assume-role
issue. This file covers the rest, at the `info`, `debug` and `trace` log levels.
"""

import base64
import json
import secrets
import urllib.parse

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from openai import OpenAI

from conftest import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, start_gateway

SONNET = "anthropic.claude-3-5-sonnet-20240620-v1:0"
EMBEDDING_MODEL = "amazon.titan-embed-text-v2:0"
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)

# Fresh for every run, so that a match can only come from this run.
FILE_KEY = "bgw-file-key-" + secrets.token_urlsafe(24)
SECOND_FILE_KEY = "bgw-second-key-" + secrets.token_urlsafe(24)
ENV_KEY = "bgw-env-key-" + secrets.token_urlsafe(24)
SESSION_TOKEN = "e2e-session-token-" + secrets.token_urlsafe(32)
WRONG_SECRET = "e2e-wrong-secret-" + secrets.token_urlsafe(16)
WRONG_KEYS = [
    FILE_KEY + "x",
    FILE_KEY[:-1],
    "bgw-never-issued-" + secrets.token_urlsafe(24),
]
API_KEYS = [FILE_KEY, SECOND_FILE_KEY, ENV_KEY]
AWS_SECRETS = [SECRET_ACCESS_KEY, SESSION_TOKEN, WRONG_SECRET]


class Recorder:
    """Every answer the gateway gave, as text: status line, headers and body."""

    def __init__(self, gateway):
        self.gateway = gateway
        self.http = requests.Session()
        self.answers = []

    def send(self, method, path, key=None, headers=None, **kwargs):
        headers = dict(headers or {})
        if key is not None:
            headers["authorization"] = f"Bearer {key}"
        response = self.http.request(
            method, self.gateway.api_url + path, headers=headers, timeout=60, **kwargs
        )
        self.answers.append(
            f"HTTP {response.status_code}\n"
            + "".join(f"{name}: {value}\n" for name, value in response.headers.items())
            + "\n"
            + response.text
        )
        return response

    def chat(self, key, body, **kwargs):
        return self.send("POST", "/v1/chat/completions", key=key, json=body, **kwargs)

    def close(self):
        self.http.close()


def user(text):
    return [{"role": "user", "content": text}]


def gateway_with(emulator, tmp_path, log_level, secret=SECRET_ACCESS_KEY):
    keys_file = tmp_path / "api-keys"
    keys_file.write_text(f"# gateway keys\n{FILE_KEY}\n{SECOND_FILE_KEY}\n")
    return start_gateway(
        emulator,
        keys_file,
        "--image-url-fetch=false",
        env_overrides={
            "RUST_LOG": log_level,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_SESSION_TOKEN": SESSION_TOKEN,
            "BEDROCK_GATEWAY_API_KEYS": ENV_KEY,
        },
    )


def realistic_session(recorder):
    """What clients do over a day, good and bad; asserts only what must hold for it to count."""
    ok = recorder.send("GET", "/v1/models", key=FILE_KEY)
    assert ok.status_code == 200, ok.text
    recorder.send("GET", "/api/v1/models", key=ENV_KEY)
    recorder.send("GET", f"/v1/models/{SONNET}", key=SECOND_FILE_KEY)
    recorder.send("GET", "/v1/models/no-such-model", key=FILE_KEY)

    answer = recorder.chat(FILE_KEY, {"model": SONNET, "messages": user("hello")})
    assert answer.status_code == 200, answer.text
    streamed = recorder.chat(
        SECOND_FILE_KEY,
        {"model": SONNET, "stream": True, "stream_options": {"include_usage": True},
         "messages": user("stream this")},
    )
    assert streamed.status_code == 200 and streamed.text.endswith("data: [DONE]\n\n")
    recorder.chat(ENV_KEY, {
        "model": "gpt-4o",
        "messages": user("weather?"),
        "tools": [{"type": "function", "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": "required",
    })
    recorder.chat(FILE_KEY, {"model": SONNET, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    ]}]})
    recorder.chat(FILE_KEY, {"model": SONNET, "messages": user("json please"),
                             "response_format": {"type": "json_object"}})
    recorder.send("POST", "/v1/embeddings", key=FILE_KEY,
                  json={"model": EMBEDDING_MODEL, "input": ["one", "two"]})

    # Keys that are wrong, malformed or sent the wrong way.
    for wrong in WRONG_KEYS:
        assert recorder.send("GET", "/v1/models", key=wrong).status_code == 401
        assert recorder.chat(wrong, {"model": SONNET, "messages": user("hi")}).status_code == 401
    basic = base64.b64encode(f"user:{FILE_KEY}".encode()).decode()
    for headers in (
        {"authorization": f"Basic {basic}"},
        {"authorization": FILE_KEY},
        {"authorization": f"Bearer  {FILE_KEY} extra"},
        {"x-api-key": FILE_KEY},
        {"api-key": FILE_KEY},
        {},
    ):
        assert recorder.send("GET", "/v1/models", headers=headers).status_code == 401
    assert recorder.send("GET", f"/v1/models?api_key={FILE_KEY}").status_code == 401

    # Invalid requests.
    recorder.send("POST", "/v1/chat/completions", key=FILE_KEY, data=b"{not json",
                  headers={"content-type": "application/json"})
    recorder.chat(FILE_KEY, {"model": SONNET})
    recorder.chat(FILE_KEY, {"model": SONNET, "messages": user("x"), "n": 3})
    recorder.chat(FILE_KEY, {"model": "no-such-model", "messages": user("x")})
    recorder.chat(FILE_KEY, {"model": SONNET, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://169.254.169.254/latest/meta-data/"}}]}]})
    recorder.send("DELETE", "/v1/chat/completions", key=FILE_KEY)
    recorder.send("GET", "/v1/unknown", key=FILE_KEY)
    recorder.send("POST", "/v1/embeddings", key=FILE_KEY, json={"model": EMBEDDING_MODEL})

    # Bedrock errors, before and inside a stream.
    for directive in ("error=ThrottlingException", "error=AccessDeniedException",
                      "error=ValidationException", "error=InternalServerException"):
        recorder.chat(FILE_KEY, {"model": SONNET, "messages": user(f"hi [[emu:{directive}]]")})
    recorder.chat(FILE_KEY, {"model": SONNET, "stream": True, "messages": user(
        "hi there friend [[emu:stream-error=throttlingException after=1]]")})

    # The official client, as Open WebUI uses it.
    client = OpenAI(api_key=SECOND_FILE_KEY, base_url=recorder.gateway.base_url, max_retries=0)
    completion = client.chat.completions.create(model=SONNET, messages=user("from the SDK"))
    recorder.answers.append(completion.model_dump_json())


def assert_nothing_leaked(gateway, recorder, secrets_list):
    metrics = requests.get(gateway.metrics_url + "/metrics", timeout=30).text
    places = {
        "the log": gateway.process.output(),
        "/metrics": metrics,
        "an answer": "\n\n".join(recorder.answers),
    }
    for place, text in places.items():
        for secret in secrets_list:
            assert secret not in text, f"a secret ({secret[:8]}...) appeared in {place}"
    assert "bedrock_gateway_http_requests_total" in metrics


@pytest.mark.parametrize("log_level", ["info", "debug", "trace"])
def test_no_secret_in_logs_metrics_or_answers(emulator, tmp_path, log_level):
    gateway = gateway_with(emulator, tmp_path, log_level)
    recorder = Recorder(gateway)
    try:
        realistic_session(recorder)
        assert_nothing_leaked(gateway, recorder, API_KEYS + WRONG_KEYS + AWS_SECRETS)
        # The log was written at the level asked for.
        levels = {json.loads(line).get("level") for line in gateway.process.output().splitlines()
                  if line.startswith("{")}
        expected = {"info": "INFO", "debug": "DEBUG", "trace": "TRACE"}[log_level]
        assert expected in levels, levels
    finally:
        recorder.close()
        gateway.process.stop()


def emulator_refusal_message(emulator):
    """The message AWS (the emulator) gives a Converse call signed with the wrong secret."""
    request = AWSRequest(
        method="POST",
        url=f"{emulator.url}/model/{urllib.parse.quote(SONNET, safe='')}/converse",
        data=json.dumps({"messages": [{"role": "user", "content": [{"text": "hi"}]}]}),
        headers={"Content-Type": "application/json"},
    )
    SigV4Auth(Credentials(ACCESS_KEY_ID, WRONG_SECRET, SESSION_TOKEN), "bedrock", REGION).add_auth(request)
    response = requests.post(
        request.url, data=request.body, headers=dict(request.headers.items()), timeout=30
    )
    assert response.status_code == 403
    return response.json().get("message", "")


def test_a_refused_signature_does_not_echo_the_session_token(emulator, tmp_path):
    """With a wrong secret, AWS refuses the signature and its message quotes the canonical
    request, which holds the `x-amz-security-token` header: that must not be passed on."""
    # What the gateway receives does hold the token.
    assert SESSION_TOKEN in emulator_refusal_message(emulator)
    gateway = gateway_with(emulator, tmp_path, "debug", secret=WRONG_SECRET)
    recorder = Recorder(gateway)
    try:
        for stream in (False, True):
            refused = recorder.chat(FILE_KEY, {"model": SONNET, "stream": stream,
                                               "messages": user("hello")})
            # The gateway's own credentials failed: not the client's fault, so not a 4xx.
            assert refused.status_code == 502, refused.text
            error = refused.json()["error"]
            assert error["code"] == "InvalidSignatureException"
            assert "signature" in error["message"]
        models = recorder.send("GET", "/v1/models", key=FILE_KEY)
        assert models.status_code in (200, 403, 502, 503), models.text
        assert_nothing_leaked(gateway, recorder, API_KEYS + AWS_SECRETS)
    finally:
        recorder.close()
        gateway.process.stop()
