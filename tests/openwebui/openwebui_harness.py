"""A real Open WebUI (slim, offline) as a local process, for tests that put the gateway behind it.

Interface (stdlib only; see README.md beside this file for what Open WebUI does with it):

    from openwebui_harness import OpenWebUI, PgVector, openwebui_executable

    webui = OpenWebUI(data_dir, env={"OPENAI_API_BASE_URLS": url, "OPENAI_API_KEYS": key})
    webui.start()                  # waits for GET /health: 20-35 s on 2 CPUs; returns webui
    admin = webui.create_admin()   # first signup becomes admin: admin.token (JWT), admin.api_key
    webui.get("/openai/config", token=admin.token)              # parsed JSON, raises HttpError
    webui.post("/openai/config/update", {...}, token=admin.token)
    webui.stream("/api/chat/completions", {...}, token=...)      # list of SSE `data:` payloads
    webui.upload_file("notes.txt", b"...", token=..., query="?process=false")
    webui.restart()                # same DATA_DIR and port: proves what Open WebUI persisted
    webui.sign_in(admin.email, admin.password)  # a fresh JWT, e.g. after a restart
    webui.stop()
    webui.output()                 # its log so far, for assertion messages
    webui.start_seconds            # how long each start took

    pg = PgVector(data_dir).start()            # PostgreSQL with pgvector: slim Open WebUI keeps
    OpenWebUI(..., env={**pg.env(), ...})      # RAG vectors only there; pg.stop()

`env` holds Open WebUI settings; the harness adds what a fast, offline start needs
(`offline_env`). Settings Open WebUI keeps in its database (the OpenAI connections, RAG settings
and most others) are read from the environment on the first start of a DATA_DIR only; later
starts keep the stored values. `openwebui_executable()` finds the `open-webui` executable
(`OPENWEBUI_BIN`, else `scripts/openwebui.sh`, which installs it once).

The module also loads the end-to-end suite's fixture module (`tests/e2e/conftest.py`) as
`e2e_fixtures`, so these tests start the emulator and the gateway exactly as that suite does.
"""

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _load_e2e_fixtures():
    path = REPO_ROOT / "tests" / "e2e" / "conftest.py"
    spec = importlib.util.spec_from_file_location("e2e_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["e2e_fixtures"] = module
    spec.loader.exec_module(module)
    return module


e2e_fixtures = _load_e2e_fixtures()
Process = e2e_fixtures.Process

API_KEY = e2e_fixtures.API_KEY
EMBEDDING_MODEL = "amazon.titan-embed-text-v2:0"

ADMIN_NAME = "Gateway Admin"
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "Gateway-admin-Passw0rd!"


def openwebui_executable():
    """The `open-webui` executable: `OPENWEBUI_BIN`, else what `scripts/openwebui.sh` prints."""
    path = os.environ.get("OPENWEBUI_BIN")
    if not path:
        path = subprocess.run(
            [str(REPO_ROOT / "scripts" / "openwebui.sh")],
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        ).stdout.strip()
    if not Path(path).is_file():
        raise FileNotFoundError(f"no open-webui executable at {path} (run scripts/openwebui.sh)")
    return path


def gateway_env(gateway, api_key=API_KEY, embedding_model=EMBEDDING_MODEL):
    """Open WebUI's first-start settings for one OpenAI connection and RAG embeddings, both
    through the gateway (an `e2e_fixtures.Gateway`)."""
    return {
        "OPENAI_API_BASE_URLS": gateway.base_url,
        "OPENAI_API_KEYS": api_key,
        "RAG_EMBEDDING_ENGINE": "openai",
        "RAG_OPENAI_API_BASE_URL": gateway.base_url,
        "RAG_OPENAI_API_KEY": api_key,
        "RAG_EMBEDDING_MODEL": embedding_model,
    }


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def offline_env(data_dir):
    """What Open WebUI needs to start fast with no network: the slim code paths (no local
    embedding, reranking or speech models), offline mode (no model or update downloads), no
    Ollama, its data in `data_dir`, API keys allowed, no telemetry."""
    return {
        "DATA_DIR": str(data_dir),
        "USE_SLIM_DOCKER": "true",
        "OFFLINE_MODE": "true",
        "HF_HUB_OFFLINE": "1",
        "ENABLE_VERSION_UPDATE_CHECK": "false",
        "ENABLE_OLLAMA_API": "false",
        "ENABLE_OPENAI_API": "true",
        "ENABLE_API_KEYS": "true",
        "WEBUI_SECRET_KEY": "openwebui-harness-secret-key-of-32-bytes-or-more",
        "WEBUI_AUTH": "true",
        "ENABLE_OTEL": "false",
        "ANONYMIZED_TELEMETRY": "false",
        "DO_NOT_TRACK": "true",
        "SCARF_NO_ANALYTICS": "true",
        "RAG_EMBEDDING_MODEL_AUTO_UPDATE": "false",
        "RAG_RERANKING_MODEL_AUTO_UPDATE": "false",
        "GLOBAL_LOG_LEVEL": "INFO",
    }


class HttpError(AssertionError):
    def __init__(self, method, path, status, body):
        super().__init__(f"{method} {path} answered {status}: {body[:2000]}")
        self.status = status
        self.body = body


@dataclass
class Admin:
    email: str
    password: str
    token: str
    api_key: str


class OpenWebUI:
    def __init__(self, data_dir, env=None, port=None, executable=None, start_timeout=240.0):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.env = dict(env or {})
        self.port = port or free_port()
        self.executable = executable or openwebui_executable()
        self.start_timeout = start_timeout
        self.process = None
        self.start_seconds = []
        self._previous_output = ""

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        env = e2e_fixtures.base_env()
        env.pop("RUST_LOG", None)
        env.update(offline_env(self.data_dir))
        env.update(self.env)
        started = time.monotonic()
        # The working directory is DATA_DIR: Open WebUI writes a few files relative to it.
        popen = subprocess.Popen(
            [self.executable, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=env,
            cwd=self.data_dir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.process = Process(popen)
        threading.Thread(target=self.process._pump, daemon=True).start()
        deadline = started + self.start_timeout
        while True:
            if self.process.popen.poll() is not None:
                self._fail_start("Open WebUI exited while starting")
            try:
                if self.get("/health", timeout=5).get("status") is True:
                    break
            except (OSError, HttpError, ValueError):
                pass
            if time.monotonic() > deadline:
                self._fail_start(f"Open WebUI not ready after {self.start_timeout:.0f}s")
            time.sleep(0.5)
        self.start_seconds.append(time.monotonic() - started)
        return self

    def _fail_start(self, reason):
        self.stop()
        raise AssertionError(f"{reason}:\n{self.tail()}")

    def stop(self):
        if self.process is not None:
            self.process.stop(timeout=30)
            self._previous_output += self.process.output() + "\n"
            self.process = None

    def restart(self):
        self.stop()
        return self.start()

    def output(self):
        current = self.process.output() if self.process is not None else ""
        return self._previous_output + current

    def tail(self, lines=60):
        return "\n".join(self.output().splitlines()[-lines:])

    # HTTP

    def request(self, method, path, body=None, token=None, timeout=120, raw=None, headers=None):
        data = None
        all_headers = dict(headers or {})
        if raw is not None:
            data = raw
        elif body is not None:
            data = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers=all_headers
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                payload = response.read().decode()
        except urllib.error.HTTPError as error:
            raise HttpError(method, path, error.code, error.read().decode(errors="replace"))
        return json.loads(payload) if payload else None

    def get(self, path, token=None, timeout=120):
        return self.request("GET", path, token=token, timeout=timeout)

    def post(self, path, body=None, token=None, timeout=120):
        return self.request("POST", path, body=body if body is not None else {}, token=token,
                            timeout=timeout)

    def stream(self, path, body, token=None, timeout=120):
        """POSTs `body` and returns the `data:` payloads of the SSE answer, `[DONE]` included."""
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        events = []
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                for line in response:
                    line = line.decode().strip()
                    if line.startswith("data:"):
                        events.append(line[len("data:"):].strip())
        except urllib.error.HTTPError as error:
            raise HttpError("POST", path, error.code, error.read().decode(errors="replace"))
        return events

    def upload_file(self, filename, content, token, content_type="text/plain", query=""):
        """POST /api/v1/files/ as multipart form data, as the web UI uploads attachments."""
        boundary = "openwebui-harness-boundary"
        body = (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode() + content + f"\r\n--{boundary}--\r\n".encode()
        return self.request(
            "POST",
            f"/api/v1/files/{query}",
            raw=body,
            token=token,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )

    # Accounts

    def create_admin(self, email=ADMIN_EMAIL, password=ADMIN_PASSWORD, name=ADMIN_NAME):
        """Signs up the first user, whom Open WebUI makes admin, and creates an API key."""
        signed_up = self.post(
            "/api/v1/auths/signup", {"name": name, "email": email, "password": password}
        )
        if signed_up.get("role") != "admin":
            raise AssertionError(f"the first user is not admin: {signed_up}")
        token = signed_up["token"]
        api_key = self.post("/api/v1/auths/api_key", token=token)["api_key"]
        return Admin(email, password, token, api_key)

    def sign_in(self, email=ADMIN_EMAIL, password=ADMIN_PASSWORD):
        return self.post("/api/v1/auths/signin", {"email": email, "password": password})["token"]


class PgVector:
    """PostgreSQL with pgvector, from the pgserver wheel `scripts/openwebui.sh` installs
    beside Open WebUI, listening on loopback with trust authentication. PostgreSQL refuses to
    run as root; as root it runs in a user namespace as an ordinary user id (files keep their
    owner, so nothing needs new permissions)."""

    def __init__(self, data_dir, executable=None, start_timeout=120.0):
        self.data_dir = Path(data_dir)
        self.port = free_port()
        self.start_timeout = start_timeout
        self.process = None
        webui_venv = Path(executable or openwebui_executable()).resolve().parent.parent
        found = sorted(webui_venv.glob("lib/python3*/site-packages/pgserver/pginstall/bin"))
        if not found:
            raise FileNotFoundError(
                f"no pgserver PostgreSQL in {webui_venv} (run scripts/openwebui.sh)"
            )
        self.bin_dir = found[0]

    @property
    def url(self):
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def env(self):
        """Open WebUI's settings for keeping its vectors here."""
        return {"VECTOR_DB": "pgvector", "PGVECTOR_DB_URL": self.url}

    def _argv(self, program, *args):
        prefix = []
        if os.geteuid() == 0:
            prefix = ["unshare", "--user", "--map-user=1000", "--map-group=1000"]
        return [*prefix, str(self.bin_dir / program), *args]

    def start(self):
        cluster = self.data_dir / "cluster"
        if not (cluster / "PG_VERSION").exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            initdb = subprocess.run(
                self._argv("initdb", "-D", str(cluster), "-U", "postgres", "--auth=trust",
                           "--encoding=UTF8", "--no-sync"),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            if initdb.returncode != 0:
                raise AssertionError(f"initdb failed ({initdb.returncode}):\n{initdb.stdout}")
        popen = subprocess.Popen(
            self._argv("postgres", "-D", str(cluster), "-h", "127.0.0.1", "-p", str(self.port),
                       "-k", str(self.data_dir), "-c", "fsync=off"),
            env=e2e_fixtures.base_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.process = Process(popen)
        threading.Thread(target=self.process._pump, daemon=True).start()
        self.process.wait_for(
            lambda line: "ready to accept connections" in line, timeout=self.start_timeout
        )
        return self

    def stop(self):
        if self.process is not None and self.process.popen.poll() is None:
            self.process.popen.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.process.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.process.popen.kill()
                self.process.popen.wait()
        self.process = None
