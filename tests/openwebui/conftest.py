"""Fixtures for the gateway behind a real Open WebUI (see openwebui_harness.py and README.md).

* `emulator`, `gateway`: the Bedrock emulator and the gateway, started as tests/e2e starts them
  (`BEDROCK_EMULATOR_BIN`, `BEDROCK_GATEWAY_PROXY_BIN`); the gateway's key is
  `openwebui_harness.API_KEY`.
* `openwebui`: one Open WebUI for the session, its OpenAI connection and its RAG embeddings
  pointed at the gateway by environment, its vectors in `pgvector`; `openwebui.admin` holds
  the admin's token and API key.
* `pgvector`: PostgreSQL with pgvector for the session (slim Open WebUI stores RAG vectors
  nowhere else).
* `start_openwebui(env=None, data_dir=None)`: a factory for Open WebUI instances of a test's
  own (e.g. with no connection, to wire one through the admin API); each is stopped afterwards.
"""

import pytest

from openwebui_harness import (  # noqa: F401 (API_KEY, EMBEDDING_MODEL: for test modules)
    API_KEY,
    EMBEDDING_MODEL,
    OpenWebUI,
    PgVector,
    e2e_fixtures,
    gateway_env,
    openwebui_executable,
)

emulator = e2e_fixtures.emulator
gateway = e2e_fixtures.gateway


@pytest.fixture(scope="session")
def openwebui_bin():
    return openwebui_executable()


@pytest.fixture(scope="session")
def pgvector(openwebui_bin, tmp_path_factory):
    server = PgVector(tmp_path_factory.mktemp("pgvector"), executable=openwebui_bin).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def openwebui(gateway, pgvector, openwebui_bin, tmp_path_factory):
    webui = OpenWebUI(
        tmp_path_factory.mktemp("open-webui"),
        env=gateway_env(gateway) | pgvector.env(),
        executable=openwebui_bin,
    )
    try:
        webui.start()
        webui.admin = webui.create_admin()
        yield webui
    finally:
        webui.stop()


@pytest.fixture
def start_openwebui(openwebui_bin, tmp_path):
    started = []

    def start(env=None, data_dir=None):
        webui = OpenWebUI(
            data_dir or tmp_path / f"open-webui-{len(started)}", env=env, executable=openwebui_bin
        )
        started.append(webui)
        return webui.start()

    yield start
    for webui in started:
        webui.stop()
