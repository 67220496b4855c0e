"""The gateway behind a real Open WebUI (slim, offline), Bedrock emulated.

Requests go to Open WebUI's own API the way its web UI sends them; Open WebUI builds its
requests to the gateway (tools, task prompts, RAG context, embeddings), and the gateway calls
the emulator, which answers deterministically ("Echo: <last user message>", see the
`bedrock-emulator` crate docs). Tests that take the `admin` fixture also check that the
gateway refused none of the requests Open WebUI made while they ran.
"""

import base64
import json
import re
import time
import urllib.request
import uuid

import pytest

from openwebui_harness import API_KEY, EMBEDDING_MODEL, HttpError, gateway_env

SONNET = "anthropic.claude-3-5-sonnet-20240620-v1:0"
# A 1x1 transparent PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def observations(emulator):
    with urllib.request.urlopen(f"{emulator.url}/_emulator/observations", timeout=10) as response:
        return json.load(response)["operations"]


def requests_of(emulator, operation):
    return observations(emulator).get(operation, {}).get("requests", 0)


def wait_until(condition, timeout=60.0, message="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(0.25)


def gateway_requests(gateway):
    """The gateway's request log records, in order."""
    records = []
    for line in gateway.process.output().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("message") == "request":
            records.append(record)
    return records


def completion_requests(gateway):
    records = gateway_requests(gateway)
    return [record for record in records if record["route"] == "/v1/chat/completions"]


@pytest.fixture
def gateway_accepts_everything(gateway):
    """Fails the test when the gateway answered any request made during it with an error."""
    before = len(gateway_requests(gateway))
    yield
    refused = [
        record for record in gateway_requests(gateway)[before:] if record["status"] >= 400
    ]
    assert not refused, f"the gateway refused requests from Open WebUI: {refused}"


@pytest.fixture
def admin(openwebui, gateway_accepts_everything):
    return openwebui.admin


def chat_message(openwebui, token, chat_id, message_id):
    chat = openwebui.get(f"/api/v1/chats/{chat_id}", token=token)
    return chat["chat"]["history"]["messages"].get(message_id, {})


def browser_chat(
    openwebui,
    token,
    prompt,
    model=SONNET,
    background_tasks=False,
    params=None,
    chat_id=None,
    parent_id=None,
    history=(),
    content=None,
    files=None,
):
    """Sends a chat message as the web UI does (`chat_id` or `parent_id: null` for a new chat,
    `id`, `session_id`, `user_message`, optionally `background_tasks`) and returns the chat id
    and the finished assistant message, which Open WebUI writes to the chat while its task
    runs. `history` holds the earlier messages, `content` the user message's content parts
    when it is not just `prompt`, `files` what the user attached to it (Open WebUI rebuilds
    the request from the chat it stored, so that is what counts for images).

    Without background tasks, for prompts with emulator directives: the task prompts quote
    the chat, and a directive there would script those replies too."""
    user_message_id, assistant_message_id = str(uuid.uuid4()), str(uuid.uuid4())
    body = {
        "stream": True,
        "model": model,
        "messages": [*history, {"role": "user", "content": content or prompt}],
        "params": params or {},
        "files": None,
        "filter_ids": [],
        "tool_ids": [],
        "tool_servers": [],
        "features": {
            "voice": False,
            "image_generation": False,
            "code_interpreter": False,
            "web_search": False,
            "memory": False,
        },
        "variables": {"{{USER_NAME}}": "Gateway Admin", "{{USER_LANGUAGE}}": "en-US"},
        "model_item": {},
        "session_id": f"browser-session-{uuid.uuid4().hex[:8]}",
        "parent_id": parent_id,
        "id": assistant_message_id,
        "user_message": {
            "id": user_message_id,
            "parentId": parent_id,
            "childrenIds": [],
            "role": "user",
            "content": prompt,
            "timestamp": int(time.time()),
            "models": [model],
            "files": files or [],
        },
        "background_tasks": {
            "title_generation": background_tasks,
            "tags_generation": background_tasks,
            "follow_up_generation": background_tasks,
        },
    }
    if chat_id:
        body["chat_id"] = chat_id
    started = openwebui.post("/api/chat/completions", body, token=token)
    assert started["status"] is True, started
    chat_id = started["chat_id"]
    message = wait_until(
        lambda: (found := chat_message(openwebui, token, chat_id, assistant_message_id)).get("done")
        and found,
        message="the assistant message",
    )
    message["id"] = assistant_message_id
    return chat_id, message


def test_gateway_models_appear_in_open_webui(openwebui, admin):
    listed = openwebui.get("/api/models", token=admin.token)["data"]
    models = {model["id"]: model for model in listed}
    assert SONNET in models, sorted(models)
    assert "gpt-4o" in models, "the gateway's alias is listed too"
    assert models[SONNET]["owned_by"] == "openai"
    assert models[SONNET]["urlIdx"] == 0


def test_chat_through_open_webui(openwebui, admin, emulator):
    before = requests_of(emulator, "Converse")
    # The admin's Open WebUI API key works like the JWT.
    answer = openwebui.post(
        "/api/chat/completions",
        {"model": SONNET, "messages": [{"role": "user", "content": "hello through Open WebUI"}]},
        token=admin.api_key,
    )
    assert answer["choices"][0]["message"]["content"] == "Echo: hello through Open WebUI"
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert answer["usage"]["completion_tokens"] == 5
    assert requests_of(emulator, "Converse") == before + 1


def test_streamed_chat_through_open_webui(openwebui, admin, emulator):
    before = requests_of(emulator, "ConverseStream")
    events = openwebui.stream(
        "/api/chat/completions",
        {
            "model": "gpt-4o",
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "stream me three words"}],
        },
        token=admin.token,
    )
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    content = "".join(
        choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"]
    )
    assert content == "Echo: stream me three words"
    content_chunks = [
        chunk for chunk in chunks if chunk["choices"] and chunk["choices"][0]["delta"].get("content")
    ]
    assert len(content_chunks) > 1, "the reply arrived in pieces"
    assert any(chunk.get("usage") for chunk in chunks), "include_usage reached the gateway"
    assert requests_of(emulator, "ConverseStream") == before + 1


def test_browser_chat_with_background_tasks(openwebui, admin, emulator, gateway):
    """A chat as the web UI starts it: streamed, with a session, the model's built-in tools,
    and title, tag and follow-up generation afterwards (non-streamed, `max_tokens` 1000)."""
    streams, calls = requests_of(emulator, "ConverseStream"), requests_of(emulator, "Converse")
    logged = len(completion_requests(gateway))
    chat_id, message = browser_chat(
        openwebui, admin.token, "hello from the browser", background_tasks=True
    )
    assert message["content"] == "Echo: hello from the browser", message
    assert not message.get("error"), message
    assert requests_of(emulator, "ConverseStream") == streams + 1
    # The chat, then title, tag and follow-up generation, each answered and logged.
    wait_until(
        lambda: len(completion_requests(gateway)) >= logged + 4,
        message="title, tag and follow-up generation",
    )
    assert requests_of(emulator, "Converse") == calls + 3
    chat = openwebui.get(f"/api/v1/chats/{chat_id}", token=admin.token)
    assert chat["title"], chat


def test_browser_chat_sends_open_webuis_builtin_tools(openwebui):
    # The directive asks the emulator for more tool calls than there are tools; its
    # ValidationException (which the gateway passes on as a 400) names how many tool
    # definitions reached Bedrock.
    _, message = browser_chat(
        openwebui, openwebui.admin.token, "count the tools [[emu:tool-calls=999]]"
    )
    error = (message.get("error") or {}).get("content", "")
    match = re.search(r"between 1 and the (\d+) tools in toolConfig\.tools", error)
    assert match, message
    assert int(match.group(1)) >= 20, "native function calling sends Open WebUI's built-in tools"


def test_browser_chat_runs_a_builtin_tool_through_the_gateway(openwebui, admin, emulator):
    """The emulator calls the first tool Open WebUI offers; Open WebUI runs it and sends the
    result back, and the emulator echoes that result: a whole native tool loop."""
    streams = requests_of(emulator, "ConverseStream")
    _, message = browser_chat(openwebui, admin.token, "what time is it [[emu:tool-calls=1]]")
    assert not message.get("error"), message
    output = message["output"]
    call = next(item for item in output if item["type"] == "function_call")
    result = next(item for item in output if item["type"] == "function_call_output")
    assert result["call_id"] == call["call_id"]
    result_text = result["output"][0]["text"]
    assert message["content"].startswith("Echo: what time is it"), message["content"]
    assert f"Echo: {result_text}" in message["content"], "the tool result reached the model"
    assert requests_of(emulator, "ConverseStream") == streams + 2


def test_browser_conversation_with_reasoning_and_tools(openwebui, admin, emulator):
    """Three turns of one chat on a reasoning model, two of them running a built-in tool: each
    turn resends the history Open WebUI keeps (tool calls and results included)."""
    claude_37 = "us.anthropic.claude-3-7-sonnet-20250219-v1:0"
    params = {"reasoning_effort": "high"}
    chat_id, parent_id, history = None, None, []
    for prompt in ("what time is it [[emu:tool-calls=1]]", "and now [[emu:tool-calls=1]]", "thanks"):
        chat_id, message = browser_chat(
            openwebui,
            admin.token,
            prompt,
            model=claude_37,
            params=params,
            chat_id=chat_id,
            parent_id=parent_id,
            history=history,
        )
        assert not message.get("error"), message
        expected = "Echo: " + prompt.split(" [[")[0]
        assert message["content"].startswith(expected), message["content"]
        kinds = [item["type"] for item in message["output"]]
        if "[[emu:tool-calls=1]]" in prompt:
            assert "function_call" in kinds and "function_call_output" in kinds, kinds
        history += [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": message["content"]},
        ]
        parent_id = message["id"]
    first_turn = openwebui.get(f"/api/v1/chats/{chat_id}", token=admin.token)["chat"]
    reasoning = [
        item
        for message in first_turn["history"]["messages"].values()
        for item in message.get("output") or []
        if item["type"] == "reasoning"
    ]
    assert reasoning, "the model's reasoning reached Open WebUI"


def test_image_uploaded_in_the_browser_reaches_bedrock(openwebui, admin):
    """The web UI uploads a pasted image as a file and attaches it by URL; Open WebUI inlines
    it as a data URL before calling the gateway."""
    image = openwebui.upload_file(
        "pixel.png", PNG, token=admin.token, content_type="image/png", query="?process=false"
    )
    url = f"/api/v1/files/{image['id']}/content"
    _, message = browser_chat(
        openwebui,
        admin.token,
        "describe this",
        content=[
            {"type": "text", "text": "describe this"},
            {"type": "image_url", "image_url": {"url": url}},
        ],
        files=[
            {"type": "image", "id": image["id"], "url": url, "name": "pixel.png",
             "content_type": "image/png"}
        ],
    )
    assert not message.get("error"), message
    # Open WebUI lists the attachment in an <attached_files> block before the text.
    assert message["content"].startswith("Echo: <attached_files>"), message["content"]
    assert message["content"].endswith(f"describe this [image/png {len(PNG)} bytes]")


def test_title_generation_task(openwebui, admin, emulator):
    before = requests_of(emulator, "Converse")
    answer = openwebui.post(
        "/api/v1/tasks/title/completions",
        {"model": SONNET, "messages": [{"role": "user", "content": "Plan a trip to Lisbon"}]},
        token=admin.token,
    )
    content = answer["choices"][0]["message"]["content"]
    assert content.startswith("Echo: ### Task:"), "the reply echoes Open WebUI's title prompt"
    assert "Plan a trip to Lisbon" in content
    assert requests_of(emulator, "Converse") == before + 1


def test_rag_embeddings_go_through_the_gateway(openwebui, admin, emulator):
    config = openwebui.get("/api/v1/retrieval/embedding", token=admin.token)
    assert config["RAG_EMBEDDING_ENGINE"] == "openai"
    assert config["RAG_EMBEDDING_MODEL"] == EMBEDDING_MODEL
    before = requests_of(emulator, "InvokeModel")
    uploaded = openwebui.upload_file(
        "gateway-notes.txt",
        b"The Bedrock gateway answers the OpenAI API.\nIts secret word is pelican.\n",
        token=admin.token,
        query="?process=true&process_in_background=false",
    )
    assert requests_of(emulator, "InvokeModel") > before, "the file's chunks were embedded"
    found = openwebui.post(
        "/api/v1/retrieval/query/doc",
        {"collection_name": f"file-{uploaded['id']}", "query": "secret word", "k": 1},
        token=admin.token,
    )
    assert found and "pelican" in found["documents"][0][0], found
    embedding_config = found["metadatas"][0][0]["embedding_config"]
    assert EMBEDDING_MODEL in embedding_config and "openai" in embedding_config


def test_knowledge_base_chat(openwebui, admin, emulator):
    before = requests_of(emulator, "InvokeModel")
    knowledge = openwebui.post(
        "/api/v1/knowledge/create",
        {"name": "Gateway notes", "description": "What the gateway team wrote down"},
        token=admin.token,
    )
    uploaded = openwebui.upload_file(
        "mascot.txt",
        b"The gateway's mascot is a walrus named Gus.\n",
        token=admin.token,
        query="?process=true&process_in_background=false",
    )
    added = openwebui.post(
        f"/api/v1/knowledge/{knowledge['id']}/file/add",
        {"file_id": uploaded["id"]},
        token=admin.token,
    )
    assert [file["id"] for file in added["files"]] == [uploaded["id"]]
    embedded = requests_of(emulator, "InvokeModel")
    assert embedded > before

    answer = openwebui.post(
        "/api/chat/completions",
        {
            "model": SONNET,
            "messages": [{"role": "user", "content": "Who is the mascot?"}],
            "files": [{"type": "collection", "id": knowledge["id"]}],
        },
        token=admin.token,
    )
    assert requests_of(emulator, "InvokeModel") > embedded, "the question was embedded"
    content = answer["choices"][0]["message"]["content"]
    assert "<source" in content and "a walrus named Gus" in content, content
    assert content.rstrip().endswith("Who is the mascot?")


def test_connection_wired_through_the_admin_api_persists(start_openwebui, gateway, tmp_path):
    """What an install wired through the admin API keeps across restarts, and that the
    environment only seeds a new DATA_DIR."""
    webui = start_openwebui(env={"ENABLE_OPENAI_API": "false"}, data_dir=tmp_path / "wired")
    admin = webui.create_admin()
    assert webui.get("/api/models", token=admin.token)["data"] == []

    # The admin UI's "verify connection" asks the gateway for its models.
    verified = webui.post(
        "/openai/verify", {"url": gateway.base_url, "key": API_KEY}, token=admin.token
    )
    assert SONNET in {model["id"] for model in verified["data"]}
    with pytest.raises(HttpError) as refused:
        webui.post("/openai/verify", {"url": gateway.base_url, "key": "wrong"}, token=admin.token)
    assert refused.value.status == 401, refused.value

    config = webui.get("/openai/config", token=admin.token)
    assert config["ENABLE_OPENAI_API"] is False
    assert config["OPENAI_API_BASE_URLS"] == ["https://api.openai.com/v1"], "Open WebUI's default"
    config["ENABLE_OPENAI_API"] = True
    config["OPENAI_API_BASE_URLS"] = [gateway.base_url]
    config["OPENAI_API_KEYS"] = [API_KEY]
    config["OPENAI_API_CONFIGS"] = {"0": {"enable": True, "tags": [{"name": "bedrock"}]}}
    # Left out, ENABLE_OPENAI_API is stored as null, which switches every connection off.
    without_switch = {key: value for key, value in config.items() if key != "ENABLE_OPENAI_API"}
    stored = webui.post("/openai/config/update", without_switch, token=admin.token)
    assert stored["ENABLE_OPENAI_API"] is None
    assert webui.get("/api/models", token=admin.token)["data"] == []

    stored = webui.post("/openai/config/update", config, token=admin.token)
    assert stored["OPENAI_API_BASE_URLS"] == [gateway.base_url]
    assert SONNET in {model["id"] for model in webui.get("/api/models", token=admin.token)["data"]}

    # Restarted with other settings in the environment: the stored ones win.
    webui.env = gateway_env(gateway) | {"OPENAI_API_BASE_URLS": "http://127.0.0.1:9/v1"}
    webui.restart()
    token = webui.sign_in()
    assert webui.get("/openai/config", token=token)["OPENAI_API_BASE_URLS"] == [gateway.base_url]
    listed = {model["id"]: model for model in webui.get("/api/models", token=token)["data"]}
    assert SONNET in listed
    assert {"name": "bedrock"} in listed[SONNET]["tags"]
    answer = webui.post(
        "/api/chat/completions",
        {"model": SONNET, "messages": [{"role": "user", "content": "still wired"}]},
        token=admin.api_key,
    )
    assert answer["choices"][0]["message"]["content"] == "Echo: still wired"
