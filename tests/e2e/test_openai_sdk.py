"""The official `openai` Python SDK as the gateway's client, Bedrock emulated."""

import http.client
import json
import time
import urllib.parse
import urllib.request

import openai
import pytest
from openai import OpenAI

from conftest import API_KEY

SONNET = "anthropic.claude-3-5-sonnet-20240620-v1:0"
SONNET_37_PROFILE = "us.anthropic.claude-3-7-sonnet-20250219-v1:0"


@pytest.fixture
def client(gateway):
    return OpenAI(api_key=API_KEY, base_url=gateway.base_url, max_retries=0, timeout=30)


def user(text):
    return [{"role": "user", "content": text}]


def raw_request(url, method="GET", body=None, headers=None):
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    connection.request(method, parts.path, body=body, headers=headers or {})
    response = connection.getresponse()
    payload = response.read()
    connection.close()
    return response, payload


def test_models_lists_text_models_profiles_and_aliases(client):
    models = {model.id: model for model in client.models.list()}
    assert SONNET in models
    assert SONNET_37_PROFILE in models
    assert "gpt-4o" in models
    assert models["gpt-4o"].owned_by == "anthropic"
    assert all(model.object == "model" for model in models.values())
    assert not any("embed" in model_id for model_id in models), "embedding models are not chat models"
    assert "anthropic.claude-3-7-sonnet-20250219-v1:0" not in models, "profile-only models are listed by profile"


def test_models_answer_json_content_type(gateway):
    response, payload = raw_request(
        f"{gateway.base_url}/models", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert response.status == 200
    assert response.getheader("content-type") == "application/json"
    assert json.loads(payload)["object"] == "list"


def test_retrieve_model_and_unknown_model(client):
    assert client.models.retrieve("gpt-4o").id == "gpt-4o"
    assert client.models.retrieve(SONNET_37_PROFILE).owned_by == "anthropic"
    with pytest.raises(openai.NotFoundError) as raised:
        client.models.retrieve("no-such-model")
    assert raised.value.body["code"] == "model_not_found"


def test_chat_completion(client):
    completion = client.chat.completions.create(
        model=SONNET,
        messages=[{"role": "system", "content": "be terse"}] + user("hello there"),
    )
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "Echo: hello there"
    assert choice.finish_reason == "stop"
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == SONNET
    # The emulator counts words: 2 (system) + 2 (user) in, 3 out.
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (4, 3)
    assert completion.usage.total_tokens == 7


def test_alias_and_bag_prefix(gateway):
    client = OpenAI(api_key=API_KEY, base_url=f"{gateway.api_url}/api/v1", max_retries=0)
    completion = client.chat.completions.create(model="gpt-4o", messages=user("via alias"))
    assert completion.choices[0].message.content == "Echo: via alias"
    assert completion.model == "gpt-4o"


def test_max_tokens_and_stop_map_to_finish_reasons(client):
    truncated = client.chat.completions.create(
        model=SONNET, messages=user("one two three four"), max_tokens=2
    )
    assert truncated.choices[0].message.content == "Echo: one"
    assert truncated.choices[0].finish_reason == "length"
    stopped = client.chat.completions.create(
        model=SONNET, messages=user("alpha beta gamma"), stop=["gamma"]
    )
    assert "gamma" not in stopped.choices[0].message.content
    assert stopped.choices[0].finish_reason == "stop"


def test_streaming_with_usage(client):
    stream = client.chat.completions.create(
        model=SONNET,
        messages=user("stream these words please"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: stream these words please"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 5
    assert chunks[-1].usage.prompt_tokens == 4
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1


def test_stream_wire_format_ends_with_done(gateway):
    body = json.dumps({"model": SONNET, "messages": user("wire check"), "stream": True})
    response, payload = raw_request(
        f"{gateway.base_url}/chat/completions",
        "POST",
        body,
        {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
    )
    assert response.status == 200
    assert response.getheader("content-type").startswith("text/event-stream")
    events = [e for e in payload.decode().split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e[len("data: "):]) for e in events[:-1]]
    assert "usage" not in chunks[0], "usage appears only when include_usage is set"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"][0]["delta"] == {}


def test_wrong_or_missing_key_is_401(gateway):
    bad = OpenAI(api_key="not-the-key", base_url=gateway.base_url, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as raised:
        bad.models.list()
    assert raised.value.status_code == 401
    assert raised.value.body["code"] == "invalid_api_key"
    response, payload = raw_request(f"{gateway.base_url}/models")
    assert response.status == 401
    assert json.loads(payload)["error"]["type"] == "authentication_error"


def test_probes_need_no_key(gateway):
    for path in ("/healthz", "/readyz"):
        response, payload = raw_request(f"{gateway.api_url}{path}")
        assert response.status == 200, payload


def test_unsupported_and_malformed_requests_are_400(client, gateway):
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model=SONNET, messages=user("x"), n=2)
    assert raised.value.body["param"] == "n"
    response, payload = raw_request(
        f"{gateway.base_url}/chat/completions",
        "POST",
        '{"model": "m", "messages": [{"role": "user", "content": 5}]}',
        {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
    )
    assert response.status == 400
    assert "messages[0].content" in json.loads(payload)["error"]["message"]
    response, payload = raw_request(
        f"{gateway.base_url}/chat/completions",
        "POST",
        "{not json",
        {"Authorization": f"Bearer {API_KEY}"},
    )
    assert response.status == 400
    assert json.loads(payload)["error"]["type"] == "invalid_request_error"


def test_oversized_body_is_413(gateway):
    body = json.dumps({"model": SONNET, "messages": user("x" * (21 * 1024 * 1024))})
    response, payload = raw_request(
        f"{gateway.base_url}/chat/completions",
        "POST",
        body,
        {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
    )
    assert response.status == 413
    assert json.loads(payload)["error"]["code"] == "request_too_large"


def test_unknown_chat_model_is_404(client):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-nonexistent", messages=user("x"))


def test_unknown_route_is_openai_404(gateway):
    response, payload = raw_request(
        f"{gateway.base_url}/nothing-here", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert response.status == 404
    assert json.loads(payload)["error"]["code"] == "unknown_url"


@pytest.mark.parametrize(
    "exception, error_class, status",
    [
        ("ValidationException", openai.BadRequestError, 400),
        ("AccessDeniedException", openai.PermissionDeniedError, 403),
        ("ResourceNotFoundException", openai.NotFoundError, 404),
        ("ThrottlingException", openai.RateLimitError, 429),
        ("ServiceQuotaExceededException", openai.RateLimitError, 429),
        ("ModelNotReadyException", openai.InternalServerError, 503),
        ("ModelTimeoutException", openai.InternalServerError, 504),
        ("InternalServerException", openai.InternalServerError, 502),
    ],
)
def test_bedrock_exceptions_map_to_sdk_errors(client, exception, error_class, status):
    with pytest.raises(error_class) as raised:
        client.chat.completions.create(
            model=SONNET, messages=user(f"fail please [[emu:error={exception}]]")
        )
    assert raised.value.status_code == status
    assert raised.value.body["code"] == exception
    if status in (429, 503):
        assert raised.value.response.headers["retry-after"] == "2"


def test_exception_before_stream_is_an_http_error(client):
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(
            model=SONNET, messages=user("[[emu:error=ThrottlingException]]"), stream=True
        )


def test_exception_mid_stream_raises_after_content(client):
    stream = client.chat.completions.create(
        model=SONNET,
        messages=user("a b c d e [[emu:stream-error=modelStreamErrorException]] [[emu:after=2]]"),
        stream=True,
    )
    received = []
    with pytest.raises(openai.APIError) as raised:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert "".join(received) == "Echo: a "
    assert "modelStreamErrorException" in str(raised.value.body) or raised.value.body.get("code")


def test_metrics_count_requests_tokens_and_errors(client, gateway):
    client.chat.completions.create(model=SONNET, messages=user("count me"))
    list(client.chat.completions.create(model=SONNET, messages=user("stream me"), stream=True))
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model=SONNET, messages=user("[[emu:error=ThrottlingException]]"))
    text = urllib.request.urlopen(f"{gateway.metrics_url}/metrics", timeout=10).read().decode()
    assert 'bedrock_gateway_http_requests_total{method="POST",route="/v1/chat/completions",status="200"}' in text
    assert f'bedrock_gateway_tokens_total{{direction="output",model="{SONNET}"}}' in text
    assert f'bedrock_gateway_time_to_first_token_seconds_count{{model="{SONNET}"}}' in text
    assert f'bedrock_gateway_bedrock_call_duration_seconds_count{{model="{SONNET}",operation="ConverseStream"}}' in text
    assert 'bedrock_gateway_upstream_errors_total{error_type="ThrottlingException"}' in text
    assert "bedrock_gateway_streams_in_flight 0" in text


def test_request_id_is_echoed_and_logged(gateway):
    response, _ = raw_request(
        f"{gateway.base_url}/models",
        headers={"Authorization": f"Bearer {API_KEY}", "X-Request-Id": "trace-abc-123"},
    )
    assert response.getheader("x-request-id") == "trace-abc-123"
    deadline = time.monotonic() + 5
    while "trace-abc-123" not in gateway.process.output():
        assert time.monotonic() < deadline, "request id not logged"
        time.sleep(0.05)


def test_key_rotation_without_restart(fresh_gateway):
    client = OpenAI(api_key=API_KEY, base_url=fresh_gateway.base_url, max_retries=0)
    assert client.models.list().data
    fresh_gateway.keys_file.write_text("rotated-key-456\n")
    rotated = OpenAI(api_key="rotated-key-456", base_url=fresh_gateway.base_url, max_retries=0)
    deadline = time.monotonic() + 10
    while True:
        try:
            rotated.models.list()
            break
        except openai.AuthenticationError:
            assert time.monotonic() < deadline, "new key never accepted"
            time.sleep(0.2)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_keys_and_prompts_never_reach_the_logs(client, gateway):
    client.chat.completions.create(model=SONNET, messages=user("confidential-prompt-text"))
    bad = OpenAI(api_key="leaked-wrong-key", base_url=gateway.base_url, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    logs = gateway.process.output()
    assert API_KEY not in logs
    assert "leaked-wrong-key" not in logs
    assert "confidential-prompt-text" not in logs


def test_sigterm_exits_cleanly(fresh_gateway):
    assert fresh_gateway.process.stop() == 0
    assert '"stopped"' in fresh_gateway.process.output()
