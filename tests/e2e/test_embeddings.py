"""`/v1/embeddings` through the official `openai` SDK, Bedrock emulated."""

import json
import math
import urllib.request

import openai
import pytest
from openai import OpenAI

from conftest import API_KEY


@pytest.fixture
def client(gateway):
    return OpenAI(api_key=API_KEY, base_url=gateway.base_url, max_retries=0, timeout=30)


def invoke_count(emulator):
    with urllib.request.urlopen(f"{emulator.url}/_emulator/observations", timeout=10) as response:
        observations = json.load(response)
    return observations["operations"].get("InvokeModel", {}).get("requests", 0)


def test_titan_v2_with_dimensions_is_normalised(client):
    # The SDK asks for base64 by default and decodes it, so this covers that path too.
    result = client.embeddings.create(
        model="amazon.titan-embed-text-v2:0", input="hello embeddings", dimensions=256
    )
    vector = result.data[0].embedding
    assert len(vector) == 256
    assert math.isclose(math.sqrt(sum(value * value for value in vector)), 1.0, rel_tol=1e-4)
    assert result.usage.prompt_tokens == 2
    assert result.model == "amazon.titan-embed-text-v2:0"


def test_float_encoding_and_determinism(client):
    first = client.embeddings.create(
        model="amazon.titan-embed-text-v1", input=["same text", "other"], encoding_format="float"
    )
    again = client.embeddings.create(
        model="amazon.titan-embed-text-v1", input=["same text"], encoding_format="float"
    )
    assert [item.index for item in first.data] == [0, 1]
    assert len(first.data[0].embedding) == 1536
    assert first.data[0].embedding == again.data[0].embedding
    assert first.data[0].embedding != first.data[1].embedding


def test_cohere_batches_at_bedrocks_limit(client, emulator):
    before = invoke_count(emulator)
    texts = [f"document number {index}" for index in range(100)]
    result = client.embeddings.create(model="cohere.embed-english-v3", input=texts)
    assert len(result.data) == 100
    assert all(len(item.embedding) == 1024 for item in result.data)
    assert invoke_count(emulator) - before == 2, "96 + 4 texts make two InvokeModel calls"
    assert result.usage.prompt_tokens > 0


def test_cohere_v4_dimensions(client):
    result = client.embeddings.create(model="cohere.embed-v4:0", input="x y", dimensions=512)
    assert len(result.data[0].embedding) == 512


def test_token_arrays_are_decoded(client):
    # cl100k_base ids of "hello embeddings", as OpenAI clients pre-tokenise.
    from_text = client.embeddings.create(
        model="amazon.titan-embed-text-v2:0", input="hello embeddings", encoding_format="float"
    ).data[0].embedding
    tokens = [15339, 71647]
    from_tokens = client.embeddings.create(
        model="amazon.titan-embed-text-v2:0", input=[tokens], encoding_format="float"
    ).data[0].embedding
    assert from_tokens == from_text


def test_wrong_models_and_inputs(client):
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-nope", input="x")
    with pytest.raises(openai.BadRequestError) as raised:
        client.embeddings.create(model="anthropic.claude-3-5-sonnet-20240620-v1:0", input="x")
    assert raised.value.body["param"] == "model"
    with pytest.raises(openai.BadRequestError) as raised:
        client.embeddings.create(model="amazon.titan-embed-text-v2:0", input="x", dimensions=100)
    assert raised.value.body["param"] == "dimensions"
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="amazon.titan-embed-text-v2:0", input=[])


def test_bedrock_errors_reach_the_client(client):
    with pytest.raises(openai.RateLimitError):
        client.embeddings.create(
            model="amazon.titan-embed-text-v2:0", input="x [[emu:error=ThrottlingException]]"
        )
