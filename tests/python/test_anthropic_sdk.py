"""The official `anthropic` SDK against the gateway's `/v1/messages`, served by every provider."""

import anthropic
import pytest

from conftest import CHAT_MODELS, RATE_LIMITED_MODEL, SCOPED_MODEL, TOOL_MODELS

PROMPT = "Please repeat these five words"
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def user(text: str = PROMPT) -> list:
    return [{"role": "user", "content": text}]


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_message(anthropic_client: anthropic.Anthropic, model: str) -> None:
    message = anthropic_client.messages.create(model=model, max_tokens=100, system="You are terse.", messages=user())
    assert message.role == "assistant"
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == PROMPT
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 5
    assert message.usage.input_tokens == 8


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_streamed_message(anthropic_client: anthropic.Anthropic, model: str) -> None:
    with anthropic_client.messages.stream(model=model, max_tokens=100, messages=user()) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == PROMPT
    assert final.content[0].text == PROMPT
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 5


@pytest.mark.parametrize("model", TOOL_MODELS)
def test_tool_use(anthropic_client: anthropic.Anthropic, model: str) -> None:
    message = anthropic_client.messages.create(
        model=model, max_tokens=100, messages=user("What is the weather in Rome?"), tools=[WEATHER_TOOL]
    )
    assert message.stop_reason == "tool_use"
    tool_use = next(block for block in message.content if block.type == "tool_use")
    assert tool_use.id and tool_use.name == "get_weather"
    assert tool_use.input == {"city": "Rome"}


@pytest.mark.parametrize("model", TOOL_MODELS)
def test_streamed_tool_use(anthropic_client: anthropic.Anthropic, model: str) -> None:
    with anthropic_client.messages.stream(
        model=model, max_tokens=100, messages=user("What is the weather in Rome?"), tools=[WEATHER_TOOL]
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    tool_use = next(block for block in final.content if block.type == "tool_use")
    assert tool_use.name == "get_weather" and tool_use.input == {"city": "Rome"}


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_tool_result_round_trip(anthropic_client: anthropic.Anthropic, model: str) -> None:
    conversation = user("What is the weather in Rome?") + [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Rome"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C and sunny"}]},
    ]
    message = anthropic_client.messages.create(model=model, max_tokens=100, messages=conversation, tools=[WEATHER_TOOL])
    assert message.content[0].text == "18C and sunny"


def test_model_list(anthropic_client: anthropic.Anthropic) -> None:
    ids = [model.id for model in anthropic_client.models.list()]
    assert set(CHAT_MODELS) <= set(ids)


def test_unknown_key_raises_authentication_error(gateway_url: str) -> None:
    client = anthropic.Anthropic(base_url=gateway_url, api_key="sk-not-a-real-key-0123456789", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as error:
        client.messages.create(model="claude-chat", max_tokens=10, messages=user())
    assert error.value.status_code == 401
    assert error.value.body["error"]["type"] == "authentication_error"


def test_model_outside_the_key_scope_raises_permission_denied(gateway_url: str, scoped_key: str) -> None:
    client = anthropic.Anthropic(base_url=gateway_url, api_key=scoped_key, max_retries=0)
    assert client.messages.create(model=SCOPED_MODEL, max_tokens=10, messages=user()).content[0].text == PROMPT
    with pytest.raises(anthropic.PermissionDeniedError):
        client.messages.create(model="claude-chat", max_tokens=10, messages=user())


def test_unknown_model_raises_not_found(anthropic_client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as error:
        anthropic_client.messages.create(model="claude-does-not-exist", max_tokens=10, messages=user())
    assert error.value.body["error"]["type"] == "not_found_error"


def test_oversized_body_raises_content_too_large(anthropic_client: anthropic.Anthropic, max_body_bytes: int) -> None:
    with pytest.raises(anthropic.ContentTooLargeError):
        anthropic_client.messages.create(model="claude-chat", max_tokens=10, messages=user("x" * (max_body_bytes + 1)))


def test_upstream_rate_limit_raises_rate_limit_error(anthropic_client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.RateLimitError) as error:
        anthropic_client.messages.create(model=RATE_LIMITED_MODEL, max_tokens=10, messages=user())
    assert error.value.body["error"]["type"] == "rate_limit_error"
