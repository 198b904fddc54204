"""The official `openai` SDK against the gateway: chat, streaming, tools, embeddings, models, errors."""

import json

import openai
import pytest

from conftest import CHAT_MODELS, EMBEDDING_MODEL, RATE_LIMITED_MODEL, SCOPED_MODEL, TOOL_MODELS

PROMPT = "Please repeat these five words"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def messages(text: str = PROMPT) -> list:
    return [{"role": "system", "content": "You are terse."}, {"role": "user", "content": text}]


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_chat_completion(openai_client: openai.OpenAI, model: str) -> None:
    completion = openai_client.chat.completions.create(model=model, messages=messages())
    choice = completion.choices[0]
    assert choice.message.content == PROMPT
    assert choice.finish_reason == "stop"
    # The mock counts words: 3 system + 5 user in, the 5-word echo out.
    assert completion.usage.prompt_tokens == 8
    assert completion.usage.completion_tokens == 5


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_streaming_with_usage(openai_client: openai.OpenAI, model: str) -> None:
    stream = openai_client.chat.completions.create(
        model=model, messages=messages(), stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == PROMPT
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5


def test_streaming_without_usage_has_no_usage_chunk(openai_client: openai.OpenAI) -> None:
    chunks = list(openai_client.chat.completions.create(model="openai-chat", messages=messages(), stream=True))
    assert all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == PROMPT


@pytest.mark.parametrize("model", TOOL_MODELS)
def test_tool_call(openai_client: openai.OpenAI, model: str) -> None:
    completion = openai_client.chat.completions.create(
        model=model, messages=messages("What is the weather in Rome?"), tools=[WEATHER_TOOL]
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.id
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Rome"}


@pytest.mark.parametrize("model", TOOL_MODELS)
def test_streamed_tool_call(openai_client: openai.OpenAI, model: str) -> None:
    stream = openai_client.chat.completions.create(
        model=model, messages=messages("What is the weather in Rome?"), tools=[WEATHER_TOOL], stream=True
    )
    calls: dict = {}
    finish = None
    for chunk in stream:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        for part in delta.tool_calls or []:
            call = calls.setdefault(part.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += part.id or ""
            call["name"] += (part.function.name or "") if part.function else ""
            call["arguments"] += (part.function.arguments or "") if part.function else ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert list(calls) == [0]
    assert calls[0]["id"] and calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"city": "Rome"}


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_tool_result_round_trip(openai_client: openai.OpenAI, model: str) -> None:
    conversation = messages("What is the weather in Rome?") + [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C and sunny"},
    ]
    completion = openai_client.chat.completions.create(model=model, messages=conversation, tools=[WEATHER_TOOL])
    # The mock echoes the last user turn, which for a tool loop is the tool result.
    assert completion.choices[0].message.content == "18C and sunny"


def test_json_mode_is_accepted(openai_client: openai.OpenAI) -> None:
    completion = openai_client.chat.completions.create(
        model="openai-chat", messages=messages('{"ok": true}'), response_format={"type": "json_object"}
    )
    assert completion.choices[0].message.content == '{"ok": true}'


def test_embeddings(openai_client: openai.OpenAI) -> None:
    result = openai_client.embeddings.create(model=EMBEDDING_MODEL, input=["first text", "second"])
    assert [item.index for item in result.data] == [0, 1]
    assert all(len(item.embedding) > 0 for item in result.data)
    assert result.usage.prompt_tokens == 3


def test_model_list_shows_what_the_key_may_use(openai_client: openai.OpenAI, gateway_url: str, scoped_key: str) -> None:
    ids = {model.id for model in openai_client.models.list()}
    assert set(CHAT_MODELS + TOOL_MODELS + [RATE_LIMITED_MODEL, EMBEDDING_MODEL]) <= ids
    scoped = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key=scoped_key, max_retries=0)
    assert [model.id for model in scoped.models.list()] == [SCOPED_MODEL]


def test_request_ids_are_returned(openai_client: openai.OpenAI) -> None:
    raw = openai_client.chat.completions.with_raw_response.create(model="openai-chat", messages=messages())
    assert raw.headers["x-request-id"].startswith("req_")
    with pytest.raises(openai.NotFoundError) as error:
        openai_client.chat.completions.create(model="no-such-model", messages=messages())
    assert error.value.request_id.startswith("req_")


def test_unknown_key_raises_authentication_error(gateway_url: str) -> None:
    client = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="sk-not-a-real-key-0123456789", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as error:
        client.chat.completions.create(model="openai-chat", messages=messages())
    assert error.value.status_code == 401
    assert error.value.code == "invalid_api_key"
    assert "sk-not-a-real-key" not in str(error.value)


def test_model_outside_the_key_scope_raises_permission_denied(gateway_url: str, scoped_key: str) -> None:
    client = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key=scoped_key, max_retries=0)
    assert client.chat.completions.create(model=SCOPED_MODEL, messages=messages()).choices[0].message.content == PROMPT
    with pytest.raises(openai.PermissionDeniedError) as error:
        client.chat.completions.create(model="claude-chat", messages=messages())
    assert error.value.code == "model_not_allowed"


def test_unknown_model_raises_not_found(openai_client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as error:
        openai_client.chat.completions.create(model="gpt-does-not-exist", messages=messages())
    assert error.value.code == "model_not_found"
    assert "gpt-does-not-exist" in error.value.message


def test_oversized_body_is_413(openai_client: openai.OpenAI, max_body_bytes: int) -> None:
    with pytest.raises(openai.APIStatusError) as error:
        openai_client.chat.completions.create(model="openai-chat", messages=messages("x" * (max_body_bytes + 1)))
    assert error.value.status_code == 413
    assert error.value.code == "request_too_large"


def test_invalid_request_raises_bad_request(openai_client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        openai_client.chat.completions.create(model="openai-chat", messages=[])
    assert "messages" in error.value.message


def test_upstream_rate_limit_raises_rate_limit_error(openai_client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as error:
        openai_client.chat.completions.create(model=RATE_LIMITED_MODEL, messages=messages())
    assert error.value.status_code == 429
    assert error.value.code == "rate_limit_exceeded"
