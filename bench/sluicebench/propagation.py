"""Propagation: from a VirtualKey being disabled (`kubectl patch`) to every gateway rejecting it, p50/p99,
against a real kube-apiserver + etcd (the project's control plane, started through `sluice-demo`) with the
real operator, two gateways watching the API and one reading mounted files in kubelet's layout.

The mounted-file gateway is fed by a kubelet stand-in that watches the published ConfigMap and Secret and
projects each change at once, with kubelet's atomic `..data` symlink swap. A real kubelet adds its own
delay on top (its sync period plus the ConfigMap cache TTL, up to about a minute by default), which is
the cluster's setting rather than Sluice's; the figure here is what Sluice adds."""

from __future__ import annotations

import base64
import json
import os
import shutil
import statistics
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from .procs import Proc, free_port
from .targets import CHAT_PATH, chat_body
from .upstreams import PROVIDER_KEY, Upstreams

GATEWAY_NAMESPACE = "sluice-system"
NAMESPACE = "bench-propagation"
GATEWAY = "default"
KEYS = 4
# Poll interval of each gateway while waiting for it to reject the key: the figure's resolution.
POLL_SECONDS = 0.005
CHANGE_TIMEOUT = 30.0


def key_value(i: int) -> str:
    return f"sk-prop-{i:04d}-{'0123456789abcdef' * 2}"


class Kubectl:
    def __init__(self, binary: str, kubeconfig: str):
        self.binary, self.env = binary, {**os.environ, "KUBECONFIG": kubeconfig}

    def run(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [self.binary, *args], input=stdin, capture_output=True, text=True, env=self.env, timeout=120
        )
        if done.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout


def manifests(upstreams: Upstreams) -> str:
    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": GATEWAY_NAMESPACE}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "bench", "namespace": NAMESPACE},
            "stringData": {"provider": PROVIDER_KEY, **{f"k{i}": key_value(i) for i in range(KEYS)}},
        },
        {
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "LLMRoute",
            "metadata": {"name": "bench", "namespace": NAMESPACE},
            "spec": {
                "model": "bench-json",
                "backends": [
                    {
                        "name": "mock",
                        "provider": "openai",
                        "model": "gpt-4o-mini",
                        "endpoint": f"http://127.0.0.1:{upstreams.nginx_port}/v1",
                        "credentialsRef": {"name": "bench", "key": "provider"},
                    }
                ],
            },
        },
    ]
    for i in range(KEYS):
        docs.append(
            {
                "apiVersion": "sluice.dev/v1alpha1",
                "kind": "VirtualKey",
                "metadata": {"name": f"key-{i}", "namespace": NAMESPACE},
                "spec": {"secretRef": {"name": "bench", "key": f"k{i}"}},
            }
        )
    return "\n---\n".join(json.dumps(d) for d in docs) + "\n"


class KubeletStandIn:
    """Projects the published ConfigMap and Secret into two folders in kubelet's layout, on every
    change seen through a watch: files in a fresh `..<time>` folder, then `..data` swapped atomically."""

    def __init__(self, kubectl: Kubectl, root: Path):
        self.kubectl, self.root = kubectl, root
        self.config_dir, self.secrets_dir = root / "config", root / "secrets"
        self.procs: list[subprocess.Popen] = []
        self.projections = 0

    def start(self) -> None:
        for kind, name, target in (
            ("configmap", f"sluice-{GATEWAY}-config", self.config_dir),
            ("secret", f"sluice-{GATEWAY}-secrets", self.secrets_dir),
        ):
            target.mkdir(parents=True, exist_ok=True)
            proc = subprocess.Popen(
                [self.kubectl.binary, "get", kind, name, "-n", GATEWAY_NAMESPACE, "--watch", "-o", "json"],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                env=self.kubectl.env,
            )
            self.procs.append(proc)
            threading.Thread(target=self._follow, args=(proc, kind, target), daemon=True).start()

    def _follow(self, proc: subprocess.Popen, kind: str, target: Path) -> None:
        decoder, buffer = json.JSONDecoder(), ""
        assert proc.stdout is not None
        for line in proc.stdout:
            buffer += line
            while buffer.strip():
                try:
                    obj, end = decoder.raw_decode(buffer.lstrip())
                except json.JSONDecodeError:
                    break
                buffer = buffer.lstrip()[end:]
                self._project(kind, obj, target)

    def _project(self, kind: str, obj: dict, target: Path) -> None:
        files: dict[str, bytes] = {}
        if kind == "configmap":
            files.update({k: v.encode() for k, v in (obj.get("data") or {}).items()})
            files.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        else:
            files.update({k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()})
        stamp = target / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.monotonic_ns()}"
        stamp.mkdir()
        for key, data in files.items():
            (stamp / key).write_bytes(data)
        link = target / "..data_tmp"
        link.unlink(missing_ok=True)
        link.symlink_to(stamp.name)
        previous = (target / "..data").resolve() if (target / "..data").exists() else None
        os.replace(link, target / "..data")
        for key in files:
            visible = target / key
            if not visible.is_symlink():
                visible.symlink_to(f"..data/{key}")
        if previous and previous != stamp.resolve():
            shutil.rmtree(previous, ignore_errors=True)
        self.projections += 1

    def ready(self) -> bool:
        return (self.config_dir / "..data").exists() and (self.secrets_dir / "..data").exists()

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait(timeout=5)


def status_with(port: int, key: str) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{CHAT_PATH}",
        data=chat_body("bench-json", "json"),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        error.read()
        return error.code
    except OSError:
        return 0


def wait_status(port: int, key: str, accepted: bool, timeout: float) -> float | None:
    """The monotonic time at which the gateway first answers 200 (accepted) or 401/403 (rejected) for the
    key; None when it does not within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = status_with(port, key)
        if (status == 200) == accepted and status in (200, 401, 403):
            return time.monotonic()
        time.sleep(POLL_SECONDS)
    return None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, int(round(q * len(ordered) + 0.5)) - 1))
    return ordered[index]


def run(
    repo: Path, gateway_binary: str, operator_binary: str, upstreams: Upstreams, workdir: Path, changes: int, log
) -> dict:
    tools = dict(
        line.removeprefix("export ").split("=", 1)
        for line in subprocess.run(["bash", "scripts/tools.sh"], cwd=repo, capture_output=True, text=True, check=True)
        .stdout.splitlines()
        if line.startswith("export SLUICE_KUBECTL=")
    )
    kubectl_binary = tools["SLUICE_KUBECTL"].strip("'")
    assets = subprocess.run(
        ["bash", "scripts/control-plane.sh"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()
    env_file = workdir / "control-plane.env"
    env_file.unlink(missing_ok=True)
    procs: list[Proc] = []
    kubelet = None
    try:
        control_plane = Proc(
            name="control-plane",
            argv=[str(repo / "target/debug/sluice-demo")],
            log=workdir / "control-plane.log",
            env={"SLUICE_CONTROL_PLANE_DIR": assets, "SLUICE_DEMO_ENV_FILE": str(env_file)},
        ).start()
        procs.append(control_plane)
        deadline = time.monotonic() + 180
        while not env_file.exists():
            if not control_plane.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"control plane did not start:\n{control_plane.log_tail()}")
            time.sleep(0.1)
        kubeconfig = env_file.read_text().split("KUBECONFIG='", 1)[1].split("'", 1)[0]
        kubectl = Kubectl(kubectl_binary, kubeconfig)
        kubectl.run("apply", "--server-side", "-f", "-", stdin=manifests(upstreams))

        env = {"KUBECONFIG": kubeconfig}
        operator = Proc(
            name="operator",
            argv=[
                operator_binary,
                "--gateway-namespace",
                GATEWAY_NAMESPACE,
                "--metrics-addr",
                f"127.0.0.1:{free_port()}",
                "--log-format",
                "json",
            ],
            log=workdir / "operator.log",
            env={**env, "SLUICE_LOG": "warn"},
        ).start()
        procs.append(operator)
        deadline = time.monotonic() + 60
        while True:
            try:
                kubectl.run("get", "configmap", f"sluice-{GATEWAY}-config", "-n", GATEWAY_NAMESPACE)
                kubectl.run("get", "secret", f"sluice-{GATEWAY}-secrets", "-n", GATEWAY_NAMESPACE)
                break
            except RuntimeError:
                if time.monotonic() > deadline or not operator.alive():
                    raise RuntimeError(f"the operator published nothing:\n{operator.log_tail()}") from None
                time.sleep(0.2)

        kubelet = KubeletStandIn(kubectl, workdir / "mounted")
        kubelet.start()
        deadline = time.monotonic() + 30
        while not kubelet.ready():
            if time.monotonic() > deadline:
                raise RuntimeError("the kubelet stand-in projected nothing")
            time.sleep(0.1)

        gateways: dict[str, int] = {}
        for name, source in (
            ("api-1", ["--namespace", GATEWAY_NAMESPACE]),
            ("api-2", ["--namespace", GATEWAY_NAMESPACE]),
            ("files", ["--config-dir", str(kubelet.config_dir), "--secrets-dir", str(kubelet.secrets_dir)]),
        ):
            port, admin = free_port(), free_port()
            gateway = Proc(
                name=f"gateway-{name}",
                argv=[gateway_binary, *source, "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}"],
                log=workdir / f"gateway-{name}.log",
                env={**env, "RUST_LOG": "warn"},
            ).start()
            procs.append(gateway)
            gateways[name] = port
        for name, port in gateways.items():
            if wait_status(port, key_value(0), True, 60) is None:
                raise RuntimeError(f"gateway {name} never accepted the key")
        log(f"  control plane, operator and 3 gateways up; {changes} disable/enable changes")

        # Per change and gateway: seconds from the API server's acknowledgement of the patch (kubectl
        # returned) to the gateway's first answer with the new verdict. Polling starts before the patch,
        # so a gateway that flips before kubectl returns counts as 0. `sent` variants count from just
        # before kubectl started (an upper bound that includes kubectl's own start-up).
        disable: dict[str, list[float]] = {name: [] for name in gateways}
        enable: dict[str, list[float]] = {name: [] for name in gateways}
        disable_sent: dict[str, list[float]] = {name: [] for name in gateways}
        timeouts = 0
        for change in range(changes):
            key_index = change % KEYS
            key = key_value(key_index)
            for disabled, sink in ((True, disable), (False, enable)):
                results: dict[str, float | None] = {}
                threads = [
                    threading.Thread(
                        target=lambda n=name, p=port: results.__setitem__(
                            n, wait_status(p, key, not disabled, CHANGE_TIMEOUT)
                        )
                    )
                    for name, port in gateways.items()
                ]
                sent = time.monotonic()
                for thread in threads:
                    thread.start()
                patch = json.dumps({"spec": {"disabled": disabled}})
                kubectl.run("patch", "virtualkey", f"key-{key_index}", "-n", NAMESPACE, "--type", "merge", "-p", patch)
                acknowledged = time.monotonic()
                for thread in threads:
                    thread.join()
                for name, at in results.items():
                    if at is None:
                        timeouts += 1
                        continue
                    sink[name].append(max(at - acknowledged, 0.0))
                    if disabled:
                        disable_sent[name].append(at - sent)
            if (change + 1) % 10 == 0:
                log(f"  {change + 1}/{changes} changes")

        def stats(samples: list[float]) -> dict:
            return {
                "n": len(samples),
                "p50_ms": statistics.median(samples) * 1000 if samples else None,
                "p99_ms": percentile(samples, 0.99) * 1000 if samples else None,
                "max_ms": max(samples) * 1000 if samples else None,
            }

        api_every = [max(a, b) for a, b in zip(disable["api-1"], disable["api-2"])]
        result = {
            "changes": changes,
            "timeouts": timeouts,
            "disable_api_every_gateway": stats(api_every),
            "disable_files": stats(disable["files"]),
            "enable_api_every_gateway": stats([max(a, b) for a, b in zip(enable["api-1"], enable["api-2"])]),
            "enable_files": stats(enable["files"]),
            "disable_api_every_gateway_from_sent": stats(
                [max(a, b) for a, b in zip(disable_sent["api-1"], disable_sent["api-2"])]
            ),
            "includes": "timed from the API server's answer to the patch; operator debounce 50 ms, gateway "
            f"reload debounce, {POLL_SECONDS * 1000:.0f} ms poll resolution",
        }
        p99 = result["disable_api_every_gateway"]["p99_ms"]
        result["summary"] = (
            f"p50 {result['disable_api_every_gateway']['p50_ms']:.0f} ms / p99 {p99:.0f} ms (API watch, both gateways); "
            f"files p50 {result['disable_files']['p50_ms']:.0f} ms / p99 {result['disable_files']['p99_ms']:.0f} ms"
            if p99 is not None and result["disable_files"]["p99_ms"] is not None
            else "no complete change measured"
        )
        result["verdict"] = "met" if p99 is not None and p99 <= 2000 and timeouts == 0 else "**not met**"
        log(f"  propagation: {result['summary']}, {timeouts} timeouts")
        return result
    finally:
        if kubelet:
            kubelet.stop()
        for proc in reversed(procs):
            proc.stop()
