"""Fixtures for the SDK tests: clients of the official `openai` and `anthropic` packages pointed at a
running Sluice gateway.

These tests do not start anything themselves: `cargo test -p sluice-tests --test gateway_python_sdk`
starts the mock provider and the gateway binary (local mode), then runs pytest with the variables below.
The route and key names are fixed by that driver (`tests/tests/gateway_python_sdk.rs`).
"""

import os

import anthropic
import openai
import pytest

# Run standalone (`pytest tests/python`), there is no gateway to test: collect nothing and say why. The
# Rust driver sets SLUICE_GATEWAY_URL and fails when pytest fails.
if not os.environ.get("SLUICE_GATEWAY_URL"):
    collect_ignore_glob = ["test_*.py"]


def pytest_report_header(config: pytest.Config) -> str:
    if os.environ.get("SLUICE_GATEWAY_URL"):
        return f"sluice gateway under test: {os.environ['SLUICE_GATEWAY_URL']}"
    return (
        "tests/python: no gateway configured; these SDK tests run inside "
        "`cargo test -p sluice-tests --test gateway_python_sdk`"
    )

# Client model names → the provider each route reaches (through the mock).
CHAT_MODELS = ["openai-chat", "claude-chat", "gemini-chat"]
# Routes whose upstream always answers with a get_weather(city="Rome") tool call.
TOOL_MODELS = ["openai-tools", "claude-tools", "gemini-tools"]
# A route whose upstream always answers 429.
RATE_LIMITED_MODEL = "limited"
EMBEDDING_MODEL = "embed"
# The only model the scoped key may use.
SCOPED_MODEL = "openai-chat"


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(
            f"{name} is not set; run these tests through "
            "`cargo test -p sluice-tests --test gateway_python_sdk`"
        )
    return value


@pytest.fixture(scope="session")
def gateway_url() -> str:
    return _env("SLUICE_GATEWAY_URL")


@pytest.fixture(scope="session")
def app_key() -> str:
    return _env("SLUICE_APP_KEY")


@pytest.fixture(scope="session")
def scoped_key() -> str:
    return _env("SLUICE_SCOPED_KEY")


@pytest.fixture(scope="session")
def max_body_bytes() -> int:
    return int(_env("SLUICE_MAX_BODY_BYTES"))


# The SDKs retry 429 and 5xx by default; the error tests want the first answer.
@pytest.fixture
def openai_client(gateway_url: str, app_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway_url}/v1", api_key=app_key, max_retries=0)


@pytest.fixture
def anthropic_client(gateway_url: str, app_key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway_url, api_key=app_key, max_retries=0)
