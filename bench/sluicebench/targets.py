"""The systems under test, each configured for the same mock upstreams: the upstreams themselves
("direct"), Sluice, LiteLLM's proxy (1 and 2 workers) and Portkey's gateway. A target knows how to start,
which process to account CPU and memory to, and the request to send for each kind of call."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .loadgen import Request
from .procs import Proc, free_port
from .upstreams import PROVIDER_KEY, Upstreams

# Kinds of call: a non-streaming chat completion, a streamed one, and a streamed one from the slow mock.
JSON, STREAM, SLOW = "json", "stream", "slow"
CHAT_PATH = "/v1/chat/completions"
PROMPT = [{"role": "user", "content": "Write one sentence about rivers."}]
# The upstream model the mocks answer as; targets that map model names send their own alias instead.
UPSTREAM_MODEL = "gpt-4o-mini"
SLUICE_KEY = "sk-sluice-bench-0123456789abcdef0123456789abcdef"
LITELLM_KEY = "sk-litellm-bench-0123456789abcdef0123456789abcdef"
ALIASES = {JSON: "bench-json", STREAM: "bench-stream", SLOW: "bench-slow"}


def chat_body(model: str, kind: str) -> bytes:
    payload: dict = {"model": model, "messages": PROMPT, "max_tokens": 64}
    if kind != JSON:
        payload["stream"] = True
    return json.dumps(payload, separators=(",", ":")).encode()


@dataclass
class Target:
    """Base: a named system under test."""

    name: str
    label: str
    procs: list[Proc] = field(default_factory=list)
    version: str = ""

    def start(self, upstreams: Upstreams, workdir: Path) -> None:
        raise NotImplementedError

    def request(self, kind: str) -> Request:
        raise NotImplementedError

    def accounted(self, kind: str) -> Proc:
        """The process whose CPU and memory count for this kind of call."""
        return self.procs[0]

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()


@dataclass
class Direct(Target):
    """Straight to the upstream: nginx for non-streaming calls, the mock for streams."""

    upstreams: Upstreams | None = None

    def start(self, upstreams: Upstreams, workdir: Path) -> None:
        self.upstreams = upstreams
        self.procs = []

    def request(self, kind: str) -> Request:
        assert self.upstreams is not None
        port = {JSON: self.upstreams.nginx_port, STREAM: self.upstreams.mock_port, SLOW: self.upstreams.slow_port}
        return Request(
            "127.0.0.1", port[kind], CHAT_PATH, {"Authorization": f"Bearer {PROVIDER_KEY}"}, chat_body(UPSTREAM_MODEL, kind)
        )

    def accounted(self, kind: str) -> Proc:
        assert self.upstreams is not None
        return {JSON: self.upstreams.nginx, STREAM: self.upstreams.mock, SLOW: self.upstreams.slow}[kind]


def upstream_urls(upstreams: Upstreams) -> dict[str, str]:
    return {
        JSON: f"http://127.0.0.1:{upstreams.nginx_port}/v1",
        STREAM: f"http://127.0.0.1:{upstreams.mock_port}/v1",
        SLOW: f"http://127.0.0.1:{upstreams.slow_port}/v1",
    }


def sluice_manifests(upstreams: Upstreams) -> str:
    """Local-mode manifests: one route per upstream, one bring-your-own virtual key, the provider key in
    a Secret. No budgets, rate limits or cache: the figures are for the plain proxy path."""
    docs = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "bench", "namespace": "bench"},
            "stringData": {"provider": PROVIDER_KEY, "virtual-key": SLUICE_KEY},
        },
        {
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "VirtualKey",
            "metadata": {"name": "bench", "namespace": "bench"},
            "spec": {"secretRef": {"name": "bench", "key": "virtual-key"}},
        },
    ]
    for kind, url in upstream_urls(upstreams).items():
        docs.append(
            {
                "apiVersion": "sluice.dev/v1alpha1",
                "kind": "LLMRoute",
                "metadata": {"name": ALIASES[kind], "namespace": "bench"},
                "spec": {
                    "model": ALIASES[kind],
                    "backends": [
                        {
                            "name": "mock",
                            "provider": "openai",
                            "model": UPSTREAM_MODEL,
                            "endpoint": url,
                            "credentialsRef": {"name": "bench", "key": "provider"},
                        }
                    ],
                },
            }
        )
    # JSON is valid YAML; one document per line keeps the file readable enough for a generated input.
    return "\n---\n".join(json.dumps(doc) for doc in docs) + "\n"


@dataclass
class Sluice(Target):
    binary: str = ""
    log_filter: str = "warn"
    port: int = 0
    admin_port: int = 0

    def start(self, upstreams: Upstreams, workdir: Path) -> None:
        config = workdir / f"{self.name}-config"
        config.mkdir(parents=True, exist_ok=True)
        (config / "bench.yaml").write_text(sluice_manifests(upstreams))
        self.port, self.admin_port = free_port(), free_port()
        proc = Proc(
            name=self.name,
            argv=[
                self.binary,
                "--local",
                str(config),
                "--local-state",
                str(workdir / f"{self.name}-keys.json"),
                "--listen",
                f"127.0.0.1:{self.port}",
                "--admin-listen",
                f"127.0.0.1:{self.admin_port}",
            ],
            log=workdir / f"{self.name}.log",
            env={"RUST_LOG": self.log_filter},
        ).start()
        self.procs = [proc]
        proc.wait_http(f"http://127.0.0.1:{self.admin_port}/readyz", timeout=30)
        self.version = subprocess.run([self.binary, "--version"], capture_output=True, text=True).stdout.strip()

    def request(self, kind: str) -> Request:
        return Request(
            "127.0.0.1", self.port, CHAT_PATH, {"Authorization": f"Bearer {SLUICE_KEY}"}, chat_body(ALIASES[kind], kind)
        )


def litellm_config(upstreams: Upstreams) -> str:
    models = [
        {
            "model_name": ALIASES[kind],
            "litellm_params": {"model": f"openai/{UPSTREAM_MODEL}", "api_base": url, "api_key": PROVIDER_KEY},
        }
        for kind, url in upstream_urls(upstreams).items()
    ]
    config = {
        "model_list": models,
        "litellm_settings": {
            "drop_params": True,
            "turn_off_message_logging": True,
            "request_timeout": 120,
            "telemetry": False,
        },
        "general_settings": {
            "master_key": LITELLM_KEY,
            "disable_spend_logs": True,
            "disable_error_logs": True,
            "disable_reset_budget": True,
        },
    }
    return json.dumps(config, indent=2) + "\n"


# LiteLLM with logging, telemetry, the cost-map download and its database all off.
LITELLM_ENV: dict[str, str | None] = {
    "LITELLM_LOG": "ERROR",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_TELEMETRY": "False",
    "DISABLE_SCHEMA_UPDATE": "true",
    "NO_DOCS": "True",
    "NO_REDOC": "True",
    "LITELLM_DONT_SHOW_FEEDBACK_BOX": "True",
    "DATABASE_URL": None,
}


@dataclass
class LiteLLM(Target):
    binary: str = ""
    workers: int = 1
    port: int = 0

    def start(self, upstreams: Upstreams, workdir: Path) -> None:
        config = workdir / f"{self.name}.yaml"
        config.write_text(litellm_config(upstreams))
        self.port = free_port()
        proc = Proc(
            name=self.name,
            argv=[
                self.binary,
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--num_workers",
                str(self.workers),
            ]
            # Several workers run under gunicorn: uvicorn's own multi-worker supervisor kills a worker that
            # takes over 5 s to import LiteLLM (as on 2 busy cores) and never comes up.
            + (["--run_gunicorn"] if self.workers > 1 else []),
            log=workdir / f"{self.name}.log",
            env=LITELLM_ENV,
            cwd=workdir,
        ).start()
        self.procs = [proc]
        proc.wait_http(f"http://127.0.0.1:{self.port}/health/liveliness", timeout=180)
        venv_bin = Path(self.binary).parent
        self.version = subprocess.run(
            [str(venv_bin / "python"), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
            capture_output=True,
            text=True,
        ).stdout.strip()

    def request(self, kind: str) -> Request:
        return Request(
            "127.0.0.1", self.port, CHAT_PATH, {"Authorization": f"Bearer {LITELLM_KEY}"}, chat_body(ALIASES[kind], kind)
        )


@dataclass
class Portkey(Target):
    start_script: str = ""
    loopback_preload: str = ""
    port: int = 0
    urls: dict[str, str] = field(default_factory=dict)

    def start(self, upstreams: Upstreams, workdir: Path) -> None:
        self.port = free_port()
        self.urls = upstream_urls(upstreams)
        proc = Proc(
            name=self.name,
            argv=["node", "--require", self.loopback_preload, self.start_script, f"--port={self.port}", "--headless"],
            log=workdir / f"{self.name}.log",
            env={"NODE_ENV": "production"},
            cwd=workdir,
        ).start()
        self.procs = [proc]
        proc.wait_http(f"http://127.0.0.1:{self.port}/", timeout=60)
        package = Path(self.start_script).parent.parent / "package.json"
        self.version = json.loads(package.read_text())["version"]

    def request(self, kind: str) -> Request:
        headers = {
            "Authorization": f"Bearer {PROVIDER_KEY}",
            "x-portkey-provider": "openai",
            "x-portkey-custom-host": self.urls[kind],
        }
        return Request("127.0.0.1", self.port, CHAT_PATH, headers, chat_body(UPSTREAM_MODEL, kind))
