"""Fixtures that run the real binaries: the Bedrock emulator and the gateway.

The binaries come from the environment (`BEDROCK_EMULATOR_BIN`,
`BEDROCK_GATEWAY_PROXY_BIN`), as built by `scripts/test.sh`.
"""

import json
import os
import re
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ACCESS_KEY_ID = "AKIAE2ETESTKEY000001"
SECRET_ACCESS_KEY = "e2e-secret-access-key"
REGION = "us-east-1"
API_KEY = "e2e-api-key-0123456789"


def binary(variable):
    path = os.environ.get(variable)
    if not path or not Path(path).is_file():
        pytest.fail(f"{variable} must point at a built binary (run scripts/test.sh)")
    return path


@dataclass
class Process:
    """A child process whose output is collected line by line."""

    popen: subprocess.Popen
    lines: list = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    @classmethod
    def start(cls, argv, env):
        popen = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        process = cls(popen)
        threading.Thread(target=process._pump, daemon=True).start()
        return process

    def _pump(self):
        for line in self.popen.stdout:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()

    def wait_for(self, predicate, timeout=30.0):
        deadline = time.monotonic() + timeout
        seen = 0
        with self.changed:
            while True:
                for line in self.lines[seen:]:
                    found = predicate(line)
                    if found:
                        return found
                seen = len(self.lines)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.popen.poll() is not None:
                    raise AssertionError(
                        "process did not become ready:\n" + "\n".join(self.lines[-30:])
                    )
                self.changed.wait(min(remaining, 0.2))

    def output(self):
        with self.changed:
            return "\n".join(self.lines)

    def stop(self, timeout=20.0):
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode


def base_env():
    env = {key: os.environ[key] for key in ("PATH", "HOME", "TMPDIR") if key in os.environ}
    env["RUST_LOG"] = "info"
    return env


@dataclass
class Emulator:
    process: Process
    url: str


@pytest.fixture(scope="session")
def emulator():
    process = Process.start(
        [
            binary("BEDROCK_EMULATOR_BIN"),
            "--listen", "127.0.0.1:0",
            "--access-key-id", ACCESS_KEY_ID,
            "--secret-access-key", SECRET_ACCESS_KEY,
            "--region", REGION,
        ],
        base_env(),
    )
    url = process.wait_for(
        lambda line: (m := re.search(r"listening on (http://\S+)", line)) and m.group(1)
    )
    yield Emulator(process, url)
    process.stop()


@dataclass
class Gateway:
    process: Process
    api_url: str
    metrics_url: str
    keys_file: Path

    @property
    def base_url(self):
        return f"{self.api_url}/v1"


def start_gateway(emulator, keys_file, *extra_args, env_overrides=None):
    """Starts the gateway against the emulator with static keys by default.

    `env_overrides` sets variables, or removes them when the value is None
    (e.g. `{"AWS_ACCESS_KEY_ID": None}` to run on IRSA or Pod Identity).
    """
    env = base_env()
    env.update(
        {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL": emulator.url,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        }
    )
    for name, value in (env_overrides or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    process = Process.start(
        [
            binary("BEDROCK_GATEWAY_PROXY_BIN"),
            "--listen", "127.0.0.1:0",
            "--metrics-listen", "127.0.0.1:0",
            "--api-keys-file", str(keys_file),
            "--api-keys-reload-seconds", "1",
            "--log-format", "json",
            "--bedrock-max-attempts", "1",
            "--model-alias", "gpt-4o=anthropic.claude-3-5-sonnet-20240620-v1:0",
            *extra_args,
        ],
        env,
    )

    def listening(line):
        try:
            record = json.loads(line)
        except ValueError:
            return None
        if record.get("message") == "bedrock-gateway-proxy listening":
            return record
        return None

    record = process.wait_for(listening)
    return Gateway(
        process,
        f"http://{record['api']}",
        f"http://{record['metrics']}",
        keys_file,
    )


@pytest.fixture(scope="session")
def gateway(emulator, tmp_path_factory):
    keys_file = tmp_path_factory.mktemp("keys") / "api-keys"
    keys_file.write_text(f"# keys for the e2e suite\n{API_KEY}\n")
    gateway = start_gateway(emulator, keys_file)
    yield gateway
    assert gateway.process.stop() == 0, gateway.process.output()[-2000:]


@pytest.fixture
def fresh_gateway(emulator, tmp_path):
    """A gateway of its own, for tests that change its keys or stop it."""
    keys_file = tmp_path / "api-keys"
    keys_file.write_text(f"{API_KEY}\n")
    gateway = start_gateway(emulator, keys_file)
    yield gateway
    gateway.process.stop()


def emulator_observations(emulator):
    """What the emulator recorded (`/_emulator/observations`)."""
    with urllib.request.urlopen(f"{emulator.url}/_emulator/observations", timeout=10) as response:
        return json.load(response)
