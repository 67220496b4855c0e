"""Tools, reasoning, images and files, and metadata through the gateway with the official
`openai` Python SDK, Bedrock emulated.

The emulator answers deterministically (see the `bedrock-emulator` crate docs): forced tool
choices call tools with schema-filled arguments, tool results are echoed, reasoning is
"Thinking about: <prompt>", and attachments are echoed as `[image/<format> <n> bytes]`.
"""

import base64
import json

import openai
import pytest
from openai import OpenAI

from conftest import API_KEY, emulator_observations

SONNET = "anthropic.claude-3-5-sonnet-20240620-v1:0"
SONNET_37_PROFILE = "us.anthropic.claude-3-7-sonnet-20250219-v1:0"

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "metric": {"type": "boolean"},
                "hours": {"type": "array", "items": {"type": "integer"}},
            },
            "required": ["city"],
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
    },
}
WEATHER_ARGUMENTS = {"city": "city-value", "days": 1, "metric": True, "hours": []}
TIME_ARGUMENTS = {"zone": "zone-value"}

# A 1x1 transparent PNG and a minimal PDF.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@pytest.fixture
def client(gateway):
    return OpenAI(api_key=API_KEY, base_url=gateway.base_url, max_retries=0, timeout=30)


def user(text):
    return [{"role": "user", "content": text}]


def data_url(media_type, payload):
    return f"data:{media_type};base64,{base64.b64encode(payload).decode()}"


def collect(stream):
    """Content, reasoning, tool calls (reassembled by index as OpenAI clients do), the finish
    reason, and the first delta of each tool call."""
    content, reasoning, finish = "", "", None
    calls, first_deltas = {}, {}
    for chunk in stream:
        for choice in chunk.choices:
            delta = choice.delta
            content += delta.content or ""
            reasoning += (delta.model_extra or {}).get("reasoning_content") or ""
            for call in delta.tool_calls or []:
                if call.index not in calls:
                    first_deltas[call.index] = call
                    calls[call.index] = {"id": call.id, "type": call.type, "name": "", "arguments": ""}
                entry = calls[call.index]
                if call.function and call.function.name:
                    entry["name"] += call.function.name
                if call.function and call.function.arguments:
                    entry["arguments"] += call.function.arguments
            if choice.finish_reason:
                finish = choice.finish_reason
    ordered = [calls[index] for index in sorted(calls)]
    return content, reasoning, ordered, first_deltas, finish


def assert_first_deltas_identify_the_calls(first_deltas):
    for call in first_deltas.values():
        assert call.id and call.id.startswith("tooluse_")
        assert call.type == "function"
        assert call.function.name


def test_feature_models_are_served(client):
    models = {model.id for model in client.models.list()}
    assert {SONNET, SONNET_37_PROFILE} <= models


@pytest.mark.parametrize(
    "tool_choice, expected_name, expected_arguments",
    [
        ("required", "get_weather", WEATHER_ARGUMENTS),
        ({"type": "function", "function": {"name": "get_time"}}, "get_time", TIME_ARGUMENTS),
    ],
)
def test_forced_tool_call(client, tool_choice, expected_name, expected_arguments):
    completion = client.chat.completions.create(
        model=SONNET,
        messages=user("What is the weather in Paris?"),
        tools=[WEATHER_TOOL, TIME_TOOL],
        tool_choice=tool_choice,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert not choice.message.content
    [call] = choice.message.tool_calls
    assert call.type == "function"
    assert call.id.startswith("tooluse_0_")
    assert call.function.name == expected_name
    assert isinstance(call.function.arguments, str)
    assert json.loads(call.function.arguments) == expected_arguments


@pytest.mark.parametrize(
    "tool_choice, expected_name, expected_arguments",
    [
        ("required", "get_weather", WEATHER_ARGUMENTS),
        ({"type": "function", "function": {"name": "get_time"}}, "get_time", TIME_ARGUMENTS),
    ],
)
def test_forced_tool_call_streamed(client, tool_choice, expected_name, expected_arguments):
    stream = client.chat.completions.create(
        model=SONNET,
        messages=user("What is the weather in Paris?"),
        tools=[WEATHER_TOOL, TIME_TOOL],
        tool_choice=tool_choice,
        stream=True,
    )
    content, _, calls, first_deltas, finish = collect(stream)
    assert finish == "tool_calls"
    assert content == ""
    assert_first_deltas_identify_the_calls(first_deltas)
    [call] = calls
    assert call["name"] == expected_name
    assert json.loads(call["arguments"]) == expected_arguments


def test_parallel_tool_calls(client):
    completion = client.chat.completions.create(
        model=SONNET,
        messages=user("Weather and time, please [[emu:tool-calls=2]]"),
        tools=[WEATHER_TOOL, TIME_TOOL],
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Echo: Weather and time, please"
    calls = choice.message.tool_calls
    assert [call.function.name for call in calls] == ["get_weather", "get_time"]
    assert [json.loads(call.function.arguments) for call in calls] == [WEATHER_ARGUMENTS, TIME_ARGUMENTS]
    assert len({call.id for call in calls}) == 2


def test_parallel_tool_calls_streamed(client):
    stream = client.chat.completions.create(
        model=SONNET,
        messages=user("Weather and time, please [[emu:tool-calls=2]]"),
        tools=[WEATHER_TOOL, TIME_TOOL],
        stream=True,
        stream_options={"include_usage": True},
    )
    content, _, calls, first_deltas, finish = collect(stream)
    assert finish == "tool_calls"
    assert content == "Echo: Weather and time, please"
    assert sorted(first_deltas) == [0, 1]
    assert_first_deltas_identify_the_calls(first_deltas)
    assert [call["name"] for call in calls] == ["get_weather", "get_time"]
    assert [json.loads(call["arguments"]) for call in calls] == [WEATHER_ARGUMENTS, TIME_ARGUMENTS]


def first_turn_calls(client):
    completion = client.chat.completions.create(
        model=SONNET,
        messages=user("Weather and time? [[emu:tool-calls=2]]"),
        tools=[WEATHER_TOOL, TIME_TOOL],
    )
    return completion.choices[0].message


def tool_loop_messages(assistant):
    results = {"get_weather": "sunny and 24C", "get_time": "it is noon"}
    return [
        {"role": "user", "content": "Weather and time? [[emu:tool-calls=2]]"},
        assistant.model_dump(exclude_none=True),
        *(
            {"role": "tool", "tool_call_id": call.id, "content": results[call.function.name]}
            for call in assistant.tool_calls
        ),
    ]


def test_full_tool_loop(client):
    messages = tool_loop_messages(first_turn_calls(client))
    completion = client.chat.completions.create(
        model=SONNET, messages=messages, tools=[WEATHER_TOOL, TIME_TOOL]
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.content == "Echo: sunny and 24C it is noon"
    assert not choice.message.tool_calls


def test_full_tool_loop_streamed(client):
    messages = tool_loop_messages(first_turn_calls(client))
    stream = client.chat.completions.create(
        model=SONNET, messages=messages, tools=[WEATHER_TOOL, TIME_TOOL], stream=True
    )
    content, _, calls, _, finish = collect(stream)
    assert finish == "stop"
    assert content == "Echo: sunny and 24C it is noon"
    assert calls == []


@pytest.mark.parametrize("stream", [False, True])
def test_tool_choice_none_with_tool_history(client, stream):
    messages = tool_loop_messages(first_turn_calls(client)) + user("Summarise that")
    response = client.chat.completions.create(
        model=SONNET,
        messages=messages,
        tools=[WEATHER_TOOL, TIME_TOOL],
        tool_choice="none",
        stream=stream,
    )
    if stream:
        content, _, calls, _, finish = collect(response)
    else:
        choice = response.choices[0]
        content, calls, finish = choice.message.content, choice.message.tool_calls, choice.finish_reason
    assert finish == "stop"
    assert not calls
    assert content.startswith("Echo: ")
    assert content.endswith("Summarise that")


@pytest.mark.parametrize("stream", [False, True])
def test_empty_tools_list(client, stream):
    response = client.chat.completions.create(
        model=SONNET, messages=user("no tools here"), tools=[], stream=stream
    )
    if stream:
        content, _, calls, _, finish = collect(response)
    else:
        choice = response.choices[0]
        content, calls, finish = choice.message.content, choice.message.tool_calls, choice.finish_reason
    assert (content, finish) == ("Echo: no tools here", "stop")
    assert not calls


def open_webui_tools(count=28):
    """Tool definitions as Open WebUI sends them: many, some without a description."""
    tools = []
    for index in range(count):
        function = {
            "name": f"tool_{index:02d}",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string", "description": "What to look up"}},
                "required": ["query"],
            },
        }
        if index % 3:
            function["description"] = f"Tool number {index}"
        tools.append({"type": "function", "function": function})
    return tools


@pytest.mark.parametrize("stream", [False, True])
def test_many_tools_some_without_descriptions(client, stream):
    response = client.chat.completions.create(
        model=SONNET,
        messages=user("Look it up [[emu:tool-calls=3]]"),
        tools=open_webui_tools(),
        tool_choice="required",
        stream=stream,
    )
    if stream:
        _, _, calls, first_deltas, finish = collect(response)
        assert_first_deltas_identify_the_calls(first_deltas)
    else:
        choice = response.choices[0]
        finish = choice.finish_reason
        calls = [
            {"name": call.function.name, "arguments": call.function.arguments}
            for call in choice.message.tool_calls
        ]
    assert finish == "tool_calls"
    assert [call["name"] for call in calls] == ["tool_00", "tool_01", "tool_02"]
    assert all(json.loads(call["arguments"]) == {"query": "query-value"} for call in calls)

    plain = client.chat.completions.create(
        model=SONNET, messages=user("just chat"), tools=open_webui_tools()
    )
    assert plain.choices[0].message.content == "Echo: just chat"


def test_reasoning_effort_on_claude_37(client):
    completion = client.chat.completions.create(
        model=SONNET_37_PROFILE,
        messages=user("why is the sky blue"),
        reasoning_effort="low",
    )
    message = completion.choices[0].message
    assert message.content == "Echo: why is the sky blue"
    assert message.model_extra["reasoning_content"] == "Thinking about: why is the sky blue"
    raw = client.chat.completions.with_raw_response.create(
        model=SONNET_37_PROFILE, messages=user("why is the sky blue"), reasoning_effort="low"
    )
    body = json.loads(raw.http_response.text)
    assert body["choices"][0]["message"]["reasoning_content"] == "Thinking about: why is the sky blue"


def test_reasoning_effort_on_claude_37_streamed(client):
    stream = client.chat.completions.create(
        model=SONNET_37_PROFILE,
        messages=user("why is the sky blue"),
        reasoning_effort="medium",
        stream=True,
    )
    content, reasoning, _, _, finish = collect(stream)
    assert reasoning == "Thinking about: why is the sky blue"
    assert content == "Echo: why is the sky blue"
    assert finish == "stop"


@pytest.mark.parametrize("stream", [False, True])
def test_reasoning_effort_is_ignored_on_claude_35(client, stream):
    response = client.chat.completions.create(
        model=SONNET, messages=user("why is the sky blue"), reasoning_effort="high", stream=stream
    )
    if stream:
        content, reasoning, _, _, _ = collect(response)
    else:
        message = response.choices[0].message
        content, reasoning = message.content, (message.model_extra or {}).get("reasoning_content")
    assert content == "Echo: why is the sky blue"
    assert not reasoning


def attachment_parts():
    return [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": data_url("image/png", PNG)}},
        {"type": "file", "file": {"filename": "report.pdf", "file_data": data_url("application/pdf", PDF)}},
    ]


@pytest.mark.parametrize("stream", [False, True])
def test_image_and_pdf_reach_bedrock(client, stream):
    response = client.chat.completions.create(
        model=SONNET, messages=[{"role": "user", "content": attachment_parts()}], stream=stream
    )
    content = collect(response)[0] if stream else response.choices[0].message.content
    assert content == (
        f"Echo: What is in these? [image/png {len(PNG)} bytes] [document report pdf {len(PDF)} bytes]"
    )


def test_bad_image_names_the_part(client):
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(
            model=SONNET,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "look"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,not base64!"}},
                    ],
                }
            ],
        )
    assert raised.value.status_code == 400
    assert raised.value.body["param"] == "messages[0].content[1]"


@pytest.mark.parametrize("stream", [False, True])
def test_user_and_metadata_reach_request_metadata(client, emulator, stream):
    response = client.chat.completions.create(
        model=SONNET,
        messages=user("tagged"),
        user="alice@example.com",
        metadata={"team": "blue", "ticket": f"T-{int(stream)}"},
        stream=stream,
    )
    if stream:
        collect(response)
    observed = emulator_observations(emulator)
    assert observed["lastRequestMetadata"] == {
        "user": "alice@example.com",
        "team": "blue",
        "ticket": f"T-{int(stream)}",
    }


TITLE_PROMPT = "### Task:\nGenerate a concise, 3-5 word title summarizing the chat history."


@pytest.mark.parametrize("model", [SONNET, SONNET_37_PROFILE])
@pytest.mark.parametrize("stream", [False, True])
def test_title_generation_with_max_tokens_1000(client, model, stream):
    extra = {"reasoning_effort": "low"} if model == SONNET_37_PROFILE else {}
    response = client.chat.completions.create(
        model=model, messages=user(TITLE_PROMPT), max_tokens=1000, stream=stream, **extra
    )
    if stream:
        content, _, _, _, finish = collect(response)
    else:
        content, finish = response.choices[0].message.content, response.choices[0].finish_reason
    assert content == "Echo: " + TITLE_PROMPT
    assert finish == "stop"


# Requests Bedrock would refuse as the client wrote them, which the gateway adapts.


def test_reasoning_effort_with_a_required_tool_on_claude_37(client):
    """Claude refuses thinking with a forced tool choice: the gateway drops the reasoning."""
    completion = client.chat.completions.create(
        model=SONNET_37_PROFILE,
        messages=user("What is the weather?"),
        tools=[WEATHER_TOOL],
        tool_choice="required",
        reasoning_effort="low",
    )
    assert completion.choices[0].finish_reason == "tool_calls"


def test_reasoning_effort_through_a_tool_loop_on_claude_37(client):
    """OpenAI clients do not send signed thinking back, so a tool loop continues without it."""
    question = user("What is the weather? [[emu:tool-calls=1]]")
    first = client.chat.completions.create(
        model=SONNET_37_PROFILE, messages=question, tools=[WEATHER_TOOL], reasoning_effort="low"
    )
    assistant = first.choices[0].message
    assert assistant.tool_calls
    messages = question + [
        assistant.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": assistant.tool_calls[0].id, "content": "sunny"},
    ]
    completion = client.chat.completions.create(
        model=SONNET_37_PROFILE, messages=messages, tools=[WEATHER_TOOL], reasoning_effort="low"
    )
    assert completion.choices[0].message.content == "Echo: sunny"


@pytest.mark.parametrize("parameters", [{}, {"properties": {"q": {"type": "string"}}}])
def test_tool_parameters_without_a_type(client, parameters):
    tool = {"type": "function", "function": {"name": "lookup", "parameters": parameters}}
    completion = client.chat.completions.create(
        model=SONNET, messages=user("look it up"), tools=[tool], tool_choice="required"
    )
    assert completion.choices[0].finish_reason == "tool_calls"


def test_user_with_a_non_breaking_space(client):
    completion = client.chat.completions.create(
        model=SONNET, messages=user("tagged"), user="Jane\u00a0Doe", metadata={"note": "a\u2003b"}
    )
    assert completion.choices[0].message.content == "Echo: tagged"
