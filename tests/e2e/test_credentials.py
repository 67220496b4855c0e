"""The gateway's AWS credentials as EKS provides them, against a real STS implementation.

moto's STS server (`moto_server`, on loopback) issues the credentials. The gateway reaches it
through `AWS_ENDPOINT_URL_STS` by way of a small recording shim, which forwards every STS call
to moto, records what it saw (action, parameters, signing key, web identity token), may
shorten the expiration of the credentials moto issued so that expiry takes seconds, and
registers the issued credentials with the Bedrock emulator. The emulator then accepts exactly
those credentials, with their session token, until they expire.

EKS Pod Identity is covered by an emulated pod identity agent: the small HTTP contract the
SDK's container credentials provider speaks, with the `Authorization` header checked.
"""

import datetime
import http.client
import json
import re
import secrets
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import API_KEY, REGION, Process, base_env, start_gateway

SONNET = "anthropic.claude-3-5-sonnet-20240620-v1:0"
SONNET_37_PROFILE = "us.anthropic.claude-3-7-sonnet-20250219-v1:0"
ACCOUNT = "123456789012"
IRSA_ROLE = f"arn:aws:iam::{ACCOUNT}:role/bedrock-gateway"
CROSS_ACCOUNT_ROLE = "arn:aws:iam::210987654321:role/bedrock-cross-account"
POD_IDENTITY_ROLE = f"arn:aws:iam::{ACCOUNT}:role/bedrock-gateway-pod-identity"


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_call(url, method="GET", body=None, headers=None, timeout=30):
    """(status, headers, body bytes) without raising on error statuses."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    payload = response.read()
    connection.close()
    return response.status, dict(response.getheaders()), payload


def http_json(url, method="GET", payload=None, headers=None, timeout=30):
    body = None if payload is None else json.dumps(payload)
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    status, _, raw = http_call(url, method, body, all_headers, timeout)
    return status, json.loads(raw) if raw else None


def rfc3339(unix):
    return datetime.datetime.fromtimestamp(unix, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def register_with_emulator(emulator_url, issued):
    status, answer = http_json(
        f"{emulator_url}/_emulator/credentials",
        "POST",
        {
            "accessKeyId": issued.access_key_id,
            "secretAccessKey": issued.secret_access_key,
            "sessionToken": issued.session_token,
            "expiration": rfc3339(issued.expires_at),
        },
    )
    assert status == 200, answer
    assert "secretAccessKey" not in answer and "sessionToken" not in answer


def emulator_observations(emulator):
    status, observed = http_json(f"{emulator.url}/_emulator/observations")
    assert status == 200
    return observed


def converse_identity(emulator):
    converse = emulator_observations(emulator)["operations"].get("Converse", {})
    return converse.get("lastAccessKeyId"), converse.get("lastSessionToken"), converse.get("authFailures", 0)


def signed_converse(emulator_url, issued):
    """A Converse call signed by botocore with `issued`: (status, error type)."""
    request = AWSRequest(
        method="POST",
        url=f"{emulator_url}/model/{urllib.parse.quote(SONNET, safe='')}/converse",
        data=json.dumps({"messages": [{"role": "user", "content": [{"text": "hi"}]}]}),
        headers={"Content-Type": "application/json"},
    )
    credentials = Credentials(issued.access_key_id, issued.secret_access_key, issued.session_token)
    SigV4Auth(credentials, "bedrock", REGION).add_auth(request)
    status, headers, body = http_call(request.url, "POST", request.body, dict(request.headers.items()))
    error_type = {k.lower(): v for k, v in headers.items()}.get("x-amzn-errortype", "")
    return status, error_type.split(":")[0], body


def chat(gateway, content, model=SONNET, timeout=30):
    return http_json(
        f"{gateway.base_url}/chat/completions",
        "POST",
        {"model": model, "messages": [{"role": "user", "content": content}]},
        {"Authorization": f"Bearer {API_KEY}"},
        timeout,
    )


def readyz(gateway):
    return http_json(f"{gateway.api_url}/readyz")


def wait_until(predicate, timeout=20.0, every=0.2):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(every)


def log_records(gateway, message):
    records = []
    for line in gateway.process.output().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("message") == message:
            records.append(record)
    return records


def wait_for_log(gateway, message, timeout=30.0):
    def found(line):
        try:
            record = json.loads(line)
        except ValueError:
            return None
        return record if record.get("message") == message else None

    return gateway.process.wait_for(found, timeout)


@dataclass
class Issued:
    """Credentials STS (or the pod identity agent) handed out."""

    action: str
    access_key_id: str
    secret_access_key: str
    session_token: str
    expires_at: int
    web_identity_token: str | None = None


@dataclass
class StsCall:
    action: str
    params: dict
    signing_key: str | None


# ---------------------------------------------------------------------------------------------
# moto's STS server


@pytest.fixture(scope="module")
def moto_url():
    port = free_port()
    server = Path(sys.executable).parent / "moto_server"
    process = Process.start([str(server), "-H", "127.0.0.1", "-p", str(port)], base_env())
    url = f"http://127.0.0.1:{port}"

    def answers():
        try:
            return http_call(f"{url}/moto-api/data.json", timeout=2)[0] == 200
        except OSError:
            return False

    try:
        assert wait_until(answers, timeout=30), "moto_server did not start:\n" + process.output()[-2000:]
        yield url
    finally:
        process.stop()


def moto_assumed_roles(moto_url):
    status, data = http_json(f"{moto_url}/moto-api/data.json")
    assert status == 200
    return data.get("sts", {}).get("AssumedRole", [])


def parse_sts_credentials(xml_text):
    root = ElementTree.fromstring(xml_text)
    credentials = root.find(".//{*}Credentials")
    if credentials is None:
        return None

    def text(name):
        node = credentials.find(f"{{*}}{name}")
        return node.text if node is not None else None

    return text("AccessKeyId"), text("SecretAccessKey"), text("SessionToken")


# ---------------------------------------------------------------------------------------------
# The recording STS shim in front of moto


@dataclass
class StsShim:
    moto_url: str
    emulator_url: str
    lifetime_seconds: int | None = None
    refusing: bool = False
    calls: list = field(default_factory=list)
    issued: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self):
        shim = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {name.lower(): value for name, value in self.headers.items()}
                status, content_type, answer = shim.handle(headers, body)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def handle(self, headers, body):
        params = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()}
        action = params.get("Action", "")
        signing = re.search(r"Credential=([^/,\s]+)/", headers.get("authorization", ""))
        with self.lock:
            self.calls.append(StsCall(action, params, signing.group(1) if signing else None))
        if self.refusing:
            return 403, "text/xml", (
                "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error>"
                "<Type>Sender</Type><Code>AccessDenied</Code>"
                f"<Message>Not authorized to perform sts:{action}</Message>"
                "</Error><RequestId>e2e-refused</RequestId></ErrorResponse>"
            ).encode()
        forwarded = {
            name: value
            for name, value in headers.items()
            if name in ("content-type", "authorization", "x-amz-date", "x-amz-security-token")
        }
        request = urllib.request.Request(self.moto_url + "/", data=body, headers=forwarded, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                status, content_type, answer = response.status, response.headers.get("Content-Type"), response.read()
        except urllib.error.HTTPError as refused:
            return refused.code, refused.headers.get("Content-Type", "text/xml"), refused.read()
        if status == 200 and action in ("AssumeRole", "AssumeRoleWithWebIdentity"):
            answer = self.record_issued(action, params, answer.decode()).encode()
        return status, content_type or "text/xml", answer

    def record_issued(self, action, params, xml_text):
        access_key_id, secret_access_key, session_token = parse_sts_credentials(xml_text)
        match = re.search(r"<Expiration>([^<]+)</Expiration>", xml_text)
        expires_at = int(
            datetime.datetime.fromisoformat(match.group(1).replace("Z", "+00:00")).timestamp()
        )
        if self.lifetime_seconds is not None:
            expires_at = int(time.time()) + self.lifetime_seconds
            xml_text = xml_text.replace(match.group(0), f"<Expiration>{rfc3339(expires_at)}</Expiration>")
        issued = Issued(
            action,
            access_key_id,
            secret_access_key,
            session_token,
            expires_at,
            params.get("WebIdentityToken"),
        )
        register_with_emulator(self.emulator_url, issued)
        with self.lock:
            self.issued.append(issued)
        return xml_text

    def issued_by_key(self, access_key_id):
        with self.lock:
            return next((i for i in self.issued if i.access_key_id == access_key_id), None)

    def actions(self):
        with self.lock:
            return [call.action for call in self.calls]


@pytest.fixture
def sts(moto_url, emulator):
    shim = StsShim(moto_url, emulator.url).start()
    yield shim
    shim.stop()


def irsa_env(sts_url, token_file, **extra):
    """What the EKS pod identity webhook injects for IRSA, plus test endpoints; no static keys."""
    return {
        "AWS_ACCESS_KEY_ID": None,
        "AWS_SECRET_ACCESS_KEY": None,
        "AWS_ENDPOINT_URL": None,
        "AWS_ROLE_ARN": IRSA_ROLE,
        "AWS_WEB_IDENTITY_TOKEN_FILE": str(token_file),
        "AWS_ROLE_SESSION_NAME": "gateway-pod",
        "AWS_ENDPOINT_URL_STS": sts_url,
        **extra,
    }


def bedrock_endpoints(emulator):
    return {
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": emulator.url,
        "AWS_ENDPOINT_URL_BEDROCK": emulator.url,
    }


@pytest.fixture
def gateways():
    started = []
    yield started
    for gateway in started:
        gateway.process.stop()


def keys_file(tmp_path):
    path = tmp_path / "api-keys"
    path.write_text(f"{API_KEY}\n")
    return path


def assert_no_secrets_logged(gateway, secrets_list):
    output = gateway.process.output()
    for secret in secrets_list:
        assert secret and secret not in output, "a secret appeared in the gateway's log"


# ---------------------------------------------------------------------------------------------
# IRSA web identity


def test_irsa_web_identity_credentials_are_cached_refreshed_and_reread(
    emulator, sts, tmp_path, gateways
):
    sts.lifetime_seconds = 18
    token_file = tmp_path / "token"
    token_file.write_text("web-identity-token-1")
    # Region from the flag only: neither AWS_REGION nor AWS_DEFAULT_REGION is set.
    gateway = start_gateway(
        emulator,
        keys_file(tmp_path),
        "--region", REGION,
        env_overrides={**irsa_env(sts.url, token_file, AWS_REGION=None), **bedrock_endpoints(emulator)},
    )
    gateways.append(gateway)

    identity = wait_for_log(gateway, "running as AWS identity")
    assert identity["arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/bedrock-gateway/gateway-pod"
    web_identity_calls = [c for c in sts.calls if c.action == "AssumeRoleWithWebIdentity"]
    assert web_identity_calls and web_identity_calls[0].params["RoleArn"] == IRSA_ROLE
    assert web_identity_calls[0].params["WebIdentityToken"] == "web-identity-token-1"

    # A cross-region inference profile id works from the configured source region.
    failures_before = converse_identity(emulator)[2]
    for text in ("first", "second", "third"):
        status, body = chat(gateway, text, model=SONNET_37_PROFILE)
        assert status == 200, body
        assert body["choices"][0]["message"]["content"] == f"Echo: {text}"
    key, token, failures = converse_identity(emulator)
    first = sts.issued_by_key(key)
    assert first is not None, "Bedrock was not called with credentials STS issued"
    assert first.action == "AssumeRoleWithWebIdentity"
    assert token == first.session_token
    assert first.web_identity_token == "web-identity-token-1"
    assert failures == failures_before
    issued_so_far = len(sts.issued)
    status, body = chat(gateway, "fourth")
    assert status == 200, body
    assert converse_identity(emulator)[0] == first.access_key_id, "credentials are cached"
    assert len(sts.issued) == issued_so_far, "a cached credential needs no STS call"

    # The kubelet rotates the projected token; the next refresh must read the new one.
    token_file.write_text("web-identity-token-2")
    time.sleep(max(0.0, first.expires_at - time.time()) + 1.0)
    status, error_type, _ = signed_converse(emulator.url, first)
    assert (status, error_type) == (403, "ExpiredTokenException"), "the first credentials expired"

    status, body = chat(gateway, "after expiry")
    assert status == 200, body
    key, token, failures = converse_identity(emulator)
    renewed = sts.issued_by_key(key)
    assert renewed is not None and renewed.access_key_id != first.access_key_id
    assert token == renewed.session_token
    assert renewed.web_identity_token == "web-identity-token-2"
    assert failures == failures_before + 1, "only the deliberately expired call was refused"

    assert_no_secrets_logged(
        gateway,
        [i.secret_access_key for i in sts.issued]
        + [i.session_token for i in sts.issued]
        + ["web-identity-token-1", "web-identity-token-2"],
    )
    assert gateway.process.stop() == 0


def test_readiness_and_requests_fail_clearly_while_sts_refuses(emulator, sts, tmp_path, gateways):
    sts.refusing = True
    token_file = tmp_path / "token"
    token_file.write_text("web-identity-token")
    gateway = start_gateway(
        emulator,
        keys_file(tmp_path),
        env_overrides={**irsa_env(sts.url, token_file), **bedrock_endpoints(emulator)},
    )
    gateways.append(gateway)

    status, body = readyz(gateway)
    assert status == 503, body
    assert body["reason"].startswith("cannot obtain AWS credentials"), body
    assert "AccessDenied" in body["reason"], body
    assert "raw" not in body["reason"] and "SdkBody" not in body["reason"], "a short reason"

    started = time.monotonic()
    status, body = chat(gateway, "hello")
    assert time.monotonic() - started < 15, "a credential failure must not hang"
    assert status == 500, body
    assert body["error"]["code"] == "CredentialsUnavailable", body
    assert "credentials" in body["error"]["message"]

    warning = wait_for_log(
        gateway, "cannot tell which AWS identity the gateway runs as (GetCallerIdentity failed)"
    )
    assert warning["level"] == "WARN"

    sts.refusing = False
    assert wait_until(lambda: readyz(gateway)[0] == 200), readyz(gateway)
    status, body = chat(gateway, "hello again")
    assert status == 200, body
    assert sts.issued_by_key(converse_identity(emulator)[0]) is not None


def test_readiness_says_why_when_sts_is_unreachable(emulator, tmp_path, gateways):
    token_file = tmp_path / "token"
    token_file.write_text("web-identity-token")
    unreachable = f"http://127.0.0.1:{free_port()}"
    gateway = start_gateway(
        emulator,
        keys_file(tmp_path),
        env_overrides={
            **irsa_env(unreachable, token_file),
            **bedrock_endpoints(emulator),
        },
    )
    gateways.append(gateway)
    status, body = readyz(gateway)
    assert status == 503, body
    assert body["status"] == "not ready"
    assert body["reason"].startswith("cannot obtain AWS credentials"), body
    assert "Connection refused" in body["reason"] or "dispatch failure" in body["reason"], body


# ---------------------------------------------------------------------------------------------
# Chained role


def test_chained_role_with_external_id_is_assumed_with_the_irsa_credentials(
    emulator, sts, moto_url, tmp_path, gateways
):
    sts.lifetime_seconds = 6
    token_file = tmp_path / "token"
    token_file.write_text("web-identity-token-chained")
    gateway = start_gateway(
        emulator,
        keys_file(tmp_path),
        "--assume-role-arn", CROSS_ACCOUNT_ROLE,
        "--assume-role-external-id", "tenant-7f3",
        "--assume-role-session-name", "gw-chained",
        env_overrides={**irsa_env(sts.url, token_file), **bedrock_endpoints(emulator)},
    )
    gateways.append(gateway)

    identity = wait_for_log(gateway, "running as AWS identity")
    assert identity["arn"].endswith(":assumed-role/bedrock-cross-account/gw-chained"), identity

    status, body = chat(gateway, "cross account")
    assert status == 200, body
    key, token, _ = converse_identity(emulator)
    chained = sts.issued_by_key(key)
    assert chained is not None and chained.action == "AssumeRole", "Bedrock saw the chained role's key"
    assert token == chained.session_token

    assume_role_calls = [c for c in sts.calls if c.action == "AssumeRole"]
    assert assume_role_calls
    call = assume_role_calls[-1]
    assert call.params["RoleArn"] == CROSS_ACCOUNT_ROLE
    assert call.params["ExternalId"] == "tenant-7f3"
    assert call.params["RoleSessionName"] == "gw-chained"
    base = sts.issued_by_key(call.signing_key)
    assert base is not None and base.action == "AssumeRoleWithWebIdentity", (
        "AssumeRole must be signed with the web identity credentials"
    )
    recorded = [
        role
        for role in moto_assumed_roles(moto_url)
        if role.get("role_arn") == CROSS_ACCOUNT_ROLE and role.get("session_name") == "gw-chained"
    ]
    assert recorded and all(role.get("external_id") == "tenant-7f3" for role in recorded)

    # The chained credentials are refreshed the same way once they expire.
    time.sleep(max(0.0, chained.expires_at - time.time()) + 1.0)
    assert signed_converse(emulator.url, chained)[:2] == (403, "ExpiredTokenException")
    status, body = chat(gateway, "cross account again")
    assert status == 200, body
    renewed = sts.issued_by_key(converse_identity(emulator)[0])
    assert renewed.action == "AssumeRole" and renewed.access_key_id != chained.access_key_id

    assert_no_secrets_logged(
        gateway,
        [i.secret_access_key for i in sts.issued] + [i.session_token for i in sts.issued],
    )


# ---------------------------------------------------------------------------------------------
# EKS Pod Identity


@dataclass
class PodIdentityAgent:
    """The EKS Pod Identity agent's credentials endpoint: `GET /v1/credentials` with the
    projected service account token in `Authorization`, answering the container credentials
    JSON. The role credentials come from moto's STS."""

    moto_url: str
    emulator_url: str
    valid_token: str
    authorizations: list = field(default_factory=list)
    issued: list = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1/credentials"

    def start(self):
        agent = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                status, payload = agent.answer(self.path, self.headers.get("Authorization"))
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def answer(self, path, authorization):
        self.authorizations.append(authorization)
        if path != "/v1/credentials":
            return 404, {"message": "not found"}
        if authorization != self.valid_token:
            return 401, {"message": "invalid service account token"}
        # The agent exchanges the token for role credentials (EKS Auth); here moto's STS
        # AssumeRole, signed with the agent's own (arbitrary) key, issues them.
        signed = AWSRequest(
            method="POST",
            url=self.moto_url + "/",
            data=urllib.parse.urlencode(
                {
                    "Action": "AssumeRole",
                    "Version": "2011-06-15",
                    "RoleArn": POD_IDENTITY_ROLE,
                    "RoleSessionName": "eks-cluster-gateway-pod",
                }
            ),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        SigV4Auth(Credentials("AKIAPODIDENTITYAGENT", "agent-secret"), "sts", REGION).add_auth(signed)
        request = urllib.request.Request(
            signed.url, data=signed.body, headers=dict(signed.headers.items()), method="POST"
        )
        with urllib.request.urlopen(request, timeout=20) as response:
            access_key_id, secret_access_key, session_token = parse_sts_credentials(response.read().decode())
        issued = Issued("PodIdentity", access_key_id, secret_access_key, session_token, int(time.time()) + 3600)
        register_with_emulator(self.emulator_url, issued)
        self.issued.append(issued)
        return 200, {
            "AccessKeyId": access_key_id,
            "SecretAccessKey": secret_access_key,
            "Token": session_token,
            "AccountId": ACCOUNT,
            "Expiration": rfc3339(issued.expires_at),
        }


def test_eks_pod_identity_agent_credentials(emulator, moto_url, sts, tmp_path, gateways):
    valid_token = "eks-pod-identity-token-" + secrets.token_hex(8)
    agent = PodIdentityAgent(moto_url, emulator.url, valid_token).start()
    try:
        token_file = tmp_path / "eks-pod-identity-token"
        token_file.write_text("a-stale-token")
        gateway = start_gateway(
            emulator,
            keys_file(tmp_path),
            env_overrides={
                "AWS_ACCESS_KEY_ID": None,
                "AWS_SECRET_ACCESS_KEY": None,
                "AWS_ENDPOINT_URL": None,
                # Region from the standard fallback variable.
                "AWS_REGION": None,
                "AWS_DEFAULT_REGION": REGION,
                "AWS_CONTAINER_CREDENTIALS_FULL_URI": agent.url,
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(token_file),
                "AWS_ENDPOINT_URL_STS": sts.url,
                **bedrock_endpoints(emulator),
            },
        )
        gateways.append(gateway)

        status, body = readyz(gateway)
        assert status == 503, body
        assert "401" in body["reason"], body
        assert "a-stale-token" in agent.authorizations, "the agent saw the token file's content"
        assert not agent.issued, "a wrong token is refused"

        token_file.write_text(valid_token)
        assert wait_until(lambda: readyz(gateway)[0] == 200), readyz(gateway)
        status, body = chat(gateway, "pod identity")
        assert status == 200, body
        key, token, _ = converse_identity(emulator)
        issued = next((i for i in agent.issued if i.access_key_id == key), None)
        assert issued is not None, "Bedrock saw the agent's credentials"
        assert token == issued.session_token
        assert agent.authorizations[-1] == valid_token

        assert_no_secrets_logged(
            gateway,
            [i.secret_access_key for i in agent.issued]
            + [i.session_token for i in agent.issued]
            + [valid_token],
        )
    finally:
        agent.stop()
