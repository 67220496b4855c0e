"""bedrock-gateway-operator registering a gateway in a running Open WebUI through its admin API.

Everything is real except the cluster's nodes and AWS: a local control plane
(scripts/control-plane.sh: kube-apiserver and etcd) with the CRD, the operator binary
(`BEDROCK_GATEWAY_OPERATOR_BIN`) watching it, the gateway and the Bedrock emulator of the
end-to-end suite, and a real Open WebUI (slim, offline; see README.md beside this file) that
has started before, so its settings live in its database and only the admin API changes them.

No kubelet runs the proxy Deployment the operator makes: the gateway process of the e2e
fixtures stands in for it (the BedrockGateway names its key Secret and points Open WebUI at that
process with `openWebUI.gatewayUrl`), and the tests mark the Deployment available.
"""

import json
import os
import re
import subprocess
import time
import urllib.request
from dataclasses import dataclass

import pytest

from conftest import API_KEY, EMBEDDING_MODEL
from openwebui_harness import REPO_ROOT, OpenWebUI, e2e_fixtures, free_port

OWNER_KEY = "bedrock_gateway"


def wait_until(condition, timeout=120.0, message="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {message}")
        time.sleep(0.5)


@dataclass
class Cluster:
    kubeconfig: str
    operator: e2e_fixtures.Process

    def kubectl(self, *args, input=None, check=True):
        result = subprocess.run(
            ["kubectl", "--kubeconfig", self.kubeconfig, *args],
            input=input,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    def apply(self, namespace, manifest):
        self.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(manifest))

    def get(self, namespace, kind, name):
        result = self.kubectl("-n", namespace, "get", kind, name, "-o", "json", check=False)
        return json.loads(result.stdout) if result.returncode == 0 else None

    def condition(self, namespace, name, kind="OpenWebUIWired"):
        gateway = self.get(namespace, "bedrockgateway", name) or {}
        for condition in gateway.get("status", {}).get("conditions", []):
            if condition["type"] == kind:
                return condition
        return None

    def events(self, namespace, name):
        listed = json.loads(self.kubectl("-n", namespace, "get", "events", "-o", "json").stdout)
        return [
            (event.get("reason"), event.get("note") or event.get("message") or "")
            for event in listed["items"]
            if event.get("involvedObject", event.get("regarding", {})).get("name") == name
        ]

    def secret(self, namespace, name, value):
        self.apply(
            namespace,
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name},
                "stringData": {"api-key": value},
            },
        )

    def mark_proxy_available(self, namespace, gateway):
        deployment = f"{gateway}-bedrock-gateway"
        wait_until(
            lambda: self.get(namespace, "deployment", deployment),
            message=f"the proxy Deployment {deployment}",
        )
        self.kubectl(
            "-n", namespace, "patch", "deployment", deployment, "--subresource=status",
            "--type=merge", "-p",
            json.dumps({"status": {"replicas": 1, "updatedReplicas": 1, "readyReplicas": 1,
                                   "availableReplicas": 1}}),
        )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A local control plane with the CRD, and the operator binary running against it."""
    operator_bin = e2e_fixtures.binary("BEDROCK_GATEWAY_OPERATOR_BIN")
    state = tmp_path_factory.mktemp("control-plane")
    scripts = REPO_ROOT / "scripts"
    started = subprocess.run(
        [str(scripts / "control-plane.sh"), "start", str(state), "--owner", str(os.getpid())],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if started.returncode != 0:
        pytest.fail(f"no control plane: {started.stderr[-2000:]}")
    kubeconfig = started.stdout.strip()
    try:
        cluster = Cluster(kubeconfig, None)
        cluster.kubectl("apply", "--server-side", "-f", str(REPO_ROOT / "crds"))
        cluster.kubectl("wait", "--for", "condition=established", "--timeout=60s",
                        "crd/bedrockgateways.bedrock-gateway.io")
        env = e2e_fixtures.base_env() | {"KUBECONFIG": kubeconfig}
        health = f"127.0.0.1:{free_port()}"
        operator = e2e_fixtures.Process.start(
            [operator_bin, "--listen", health, "--log-json=false", "--resync-seconds", "10"],
            env,
        )
        cluster.operator = operator

        def ready():
            assert operator.popen.poll() is None, operator.output()[-2000:]
            try:
                with urllib.request.urlopen(f"http://{health}/readyz", timeout=2) as answer:
                    return answer.status == 200
            except OSError:
                return False

        wait_until(ready, timeout=60, message="the operator's /readyz")
        yield cluster
        operator.stop()
        log = operator.output()
        assert "panicked" not in log, log[-4000:]
    finally:
        subprocess.run([str(scripts / "control-plane.sh"), "stop", str(state)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def webui(pgvector, openwebui_bin, tmp_path_factory):
    """An Open WebUI that has started before the gateway exists, with its admin."""
    webui = OpenWebUI(tmp_path_factory.mktemp("open-webui-admin"), env=pgvector.env(),
                      executable=openwebui_bin)
    webui.start()
    try:
        webui.admin = webui.create_admin()
        yield webui
    finally:
        webui.stop()


def namespace_of(cluster, name):
    cluster.kubectl("create", "namespace", name)
    return name


def bedrock_gateway(name, open_webui):
    return {
        "apiVersion": "bedrock-gateway.io/v1alpha1",
        "kind": "BedrockGateway",
        "metadata": {"name": name},
        "spec": {
            "region": "us-east-1",
            "aws": {"roleArn": "arn:aws:iam::123456789012:role/bedrock-gateway"},
            "apiKey": {"secretRef": {"name": "gateway-key", "key": "api-key"}},
            "openWebUI": open_webui,
        },
    }


def open_webui_deployment():
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "open-webui"},
        "spec": {
            "selector": {"matchLabels": {"app": "open-webui"}},
            "template": {
                "metadata": {"labels": {"app": "open-webui"}},
                "spec": {"containers": [{"name": "open-webui",
                                         "image": "ghcr.io/open-webui/open-webui:0.12.4"}]},
            },
        },
    }


def config_updates(output):
    """POSTs to /openai/config/update in an Open WebUI log (its access log lines)."""
    return len(re.findall(r'"POST /openai/config/update HTTP/1\.1" 200', output))


def config_reads(output):
    return len(re.findall(r'"GET /openai/config HTTP/1\.1" 200', output))


def model_ids(webui, token):
    return {model["id"]: model for model in webui.get("/api/models", token=token)["data"]}


def embedding_requests(emulator):
    with urllib.request.urlopen(f"{emulator.url}/_emulator/observations", timeout=10) as answer:
        operations = json.load(answer)["operations"]
    return operations.get("InvokeModel", {}).get("requests", 0)


def test_refused_or_unreachable_open_webui_is_a_false_condition(cluster, webui, gateway):
    namespace = namespace_of(cluster, "refused")
    cluster.secret(namespace, "gateway-key", API_KEY)
    cluster.secret(namespace, "wrong-admin", "sk-not-an-admin-key")
    closed_port = free_port()
    cluster.apply(namespace, bedrock_gateway("refused", {
        "gatewayUrl": gateway.base_url,
        "adminApi": {"url": webui.url,
                     "apiKeySecretRef": {"name": "wrong-admin", "key": "api-key"}},
    }))
    cluster.apply(namespace, bedrock_gateway("nowhere", {
        "gatewayUrl": gateway.base_url,
        "adminApi": {"url": f"http://127.0.0.1:{closed_port}",
                     "apiKeySecretRef": {"name": "wrong-admin", "key": "api-key"}},
    }))
    cluster.apply(namespace, bedrock_gateway("no-secret", {
        "gatewayUrl": gateway.base_url,
        "adminApi": {"url": webui.url,
                     "apiKeySecretRef": {"name": "missing", "key": "api-key"}},
    }))
    expected = {
        "refused": "OpenWebUIUnauthorized",
        "nowhere": "OpenWebUIUnreachable",
        "no-secret": "AdminKeySecretNotFound",
    }
    for name, reason in expected.items():
        condition = wait_until(
            lambda: (c := cluster.condition(namespace, name)) and c["reason"] == reason and c,
            message=f"{name}: OpenWebUIWired {reason}",
        )
        assert condition["status"] == "False", condition
        ready = cluster.condition(namespace, name, "Ready")
        assert ready["status"] == "False"
    refused = cluster.condition(namespace, "refused")["message"]
    assert "refused the admin key" in refused and "sk-not-an-admin-key" not in refused
    assert "OpenWebUIUnauthorized" in [
        reason for reason, _ in cluster.events(namespace, "refused")
    ]
    # A refused key does not hold the deletion up.
    cluster.kubectl("-n", namespace, "delete", "bedrockgateway", "refused", "--wait=false")
    wait_until(lambda: cluster.get(namespace, "bedrockgateway", "refused") is None,
               timeout=60, message="the refused gateway to go")
    assert cluster.operator.popen.poll() is None, "the operator must keep running"
    # Nothing was written into Open WebUI by any of them.
    config = webui.get("/openai/config", token=webui.admin.token)
    assert gateway.base_url not in config["OPENAI_API_BASE_URLS"]


def test_the_operator_registers_the_gateway_in_a_running_open_webui(
    cluster, webui, gateway, emulator, tmp_path
):
    admin = webui.admin
    # A connection the user added by hand, through the admin API: a second gateway.
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"{API_KEY}\n")
    users_gateway = e2e_fixtures.start_gateway(emulator, keys_file)
    try:
        users_config = {"enable": True, "prefix_id": "mine", "tags": [{"name": "by-hand"}],
                        "connection_type": "external"}
        webui.post("/openai/config/update", {
            "ENABLE_OPENAI_API": True,
            "OPENAI_API_BASE_URLS": [users_gateway.base_url],
            "OPENAI_API_KEYS": [API_KEY],
            "OPENAI_API_CONFIGS": {"0": users_config},
        }, token=admin.token)
        before = webui.get("/openai/config", token=admin.token)
        assert "mine.gpt-4o" in model_ids(webui, admin.token)

        namespace = namespace_of(cluster, "team")
        cluster.secret(namespace, "gateway-key", API_KEY)
        cluster.secret(namespace, "open-webui-admin", admin.api_key)
        cluster.apply(namespace, open_webui_deployment())
        cluster.apply(namespace, bedrock_gateway("bedrock", {
            "workloadRef": {"name": "open-webui"},
            "gatewayUrl": gateway.base_url,
            "adminApi": {"url": webui.url, "prefixId": "bedrock",
                         "apiKeySecretRef": {"name": "open-webui-admin", "key": "api-key"}},
            "embeddings": {"model": EMBEDDING_MODEL},
        }))
        cluster.mark_proxy_available(namespace, "bedrock")
        condition = wait_until(
            lambda: (c := cluster.condition(namespace, "bedrock")) and c["status"] == "True"
            and c,
            message="OpenWebUIWired True",
        )
        assert condition["reason"] == "AdminApiRegistered", condition
        assert "as OpenAI connection 1" in condition["message"], condition
        assert re.search(r"which lists \d+ of its models \(e\.g\. bedrock\.", condition["message"])
        wait_until(lambda: cluster.condition(namespace, "bedrock", "Ready")["status"] == "True",
                   message="Ready")

        # The gateway's entry went after the user's, which is exactly as it was.
        config = webui.get("/openai/config", token=admin.token)
        assert config["OPENAI_API_BASE_URLS"] == [users_gateway.base_url, gateway.base_url]
        assert config["OPENAI_API_KEYS"] == [API_KEY, API_KEY]
        assert config["OPENAI_API_CONFIGS"]["0"] == before["OPENAI_API_CONFIGS"]["0"]
        ours = config["OPENAI_API_CONFIGS"]["1"]
        assert ours["enable"] is True and ours["prefix_id"] == "bedrock"
        assert ours[OWNER_KEY] == f"{namespace}/bedrock"
        assert config["ENABLE_OPENAI_API"] is True

        # Its models appear in Open WebUI, a chat through Open WebUI reaches Bedrock.
        models = model_ids(webui, admin.token)
        assert models["bedrock.gpt-4o"]["urlIdx"] == 1
        assert models["mine.gpt-4o"]["urlIdx"] == 0
        answer = webui.post("/api/chat/completions", {
            "model": "bedrock.gpt-4o", "stream": False,
            "messages": [{"role": "user", "content": "Hello through the admin API"}],
        }, token=admin.token)
        assert "Hello through the admin API" in answer["choices"][0]["message"]["content"]

        # The environment is wired too, for a fresh install.
        env = {var["name"]: var for var in cluster.get(namespace, "deployment", "open-webui")
               ["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["OPENAI_API_BASE_URLS"]["value"] == gateway.base_url
        assert env["RAG_EMBEDDING_ENGINE"]["value"] == "openai"
        assert env["RAG_OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "gateway-key"

        # RAG embeddings: set through the admin API, and used.
        embedding = webui.get("/api/v1/retrieval/embedding", token=admin.token)
        assert embedding["RAG_EMBEDDING_ENGINE"] == "openai"
        assert embedding["RAG_EMBEDDING_MODEL"] == EMBEDDING_MODEL
        assert embedding["openai_config"] == {"url": gateway.base_url, "key": API_KEY}
        embedded_before = embedding_requests(emulator)
        uploaded = webui.upload_file(
            "notes.txt", b"The gateway runs Bedrock models for Open WebUI.\n", admin.token,
            query="?process=true&process_in_background=false",
        )
        assert uploaded["id"]
        assert embedding_requests(emulator) > embedded_before, "no embedding reached Bedrock"

        # Further reconciles read Open WebUI's settings but write nothing.
        log = webui.output()
        updates, reads = config_updates(log), config_reads(log)
        wait_until(lambda: config_reads(webui.output()) >= reads + 2, timeout=90,
                   message="two more reconciles")
        assert config_updates(webui.output()) == updates

        # The registration lives in Open WebUI's database: it survives a restart, with no
        # write from the operator needed.
        restarts_from = len(webui.output())
        webui.restart()
        token = webui.sign_in()
        assert "bedrock.gpt-4o" in model_ids(webui, token)
        answer = webui.post("/api/chat/completions", {
            "model": "bedrock.gpt-4o", "stream": False,
            "messages": [{"role": "user", "content": "Still here after a restart"}],
        }, token=token)
        assert "Still here after a restart" in answer["choices"][0]["message"]["content"]
        wait_until(lambda: config_reads(webui.output()[restarts_from:]) >= 1, timeout=90,
                   message="a reconcile after the restart")
        assert config_updates(webui.output()[restarts_from:]) == 0
        assert cluster.condition(namespace, "bedrock")["status"] == "True"

        # Deleting the gateway takes out its connection and embedding URL and key only.
        cluster.kubectl("-n", namespace, "delete", "bedrockgateway", "bedrock", "--wait=false")
        wait_until(lambda: cluster.get(namespace, "bedrockgateway", "bedrock") is None,
                   timeout=90, message="the gateway to go")
        config = webui.get("/openai/config", token=token)
        assert config["OPENAI_API_BASE_URLS"] == [users_gateway.base_url]
        assert config["OPENAI_API_KEYS"] == [API_KEY]
        assert config["OPENAI_API_CONFIGS"] == {"0": before["OPENAI_API_CONFIGS"]["0"]}
        models = model_ids(webui, token)
        assert "mine.gpt-4o" in models and not any(m.startswith("bedrock.") for m in models)
        embedding = webui.get("/api/v1/retrieval/embedding", token=token)
        assert embedding["openai_config"] == {"url": "", "key": ""}
        reasons = [reason for reason, _ in cluster.events(namespace, "bedrock")]
        assert "Registered" in reasons and "Unregistered" in reasons, reasons
        env = {var["name"] for var in cluster.get(namespace, "deployment", "open-webui")
               ["spec"]["template"]["spec"]["containers"][0].get("env", [])}
        assert not env, env

        # Keys never reach the operator's log.
        operator_log = cluster.operator.output()
        assert admin.api_key not in operator_log and API_KEY not in operator_log
    finally:
        users_gateway.process.stop()
