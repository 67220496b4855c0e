"""http(s) image URLs through the gateway with the official `openai` Python SDK.

A local image server answers on loopback, which the gateway refuses unless told otherwise: the
gateway of these tests allows `127.0.0.0/8`, the suite's shared gateway does not. The emulator
echoes each image block it receives as `[image/<format> <n> bytes]` and records its SHA-256.
"""

import base64
import hashlib
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest
from openai import OpenAI

from conftest import API_KEY, emulator_observations, start_gateway

SONNET = "anthropic.claude-3-5-sonnet-20240620-v1:0"

# A 1x1 PNG and an 8x8 grey baseline JPEG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEB"
    "AQEBAQEBAQEBAQEBAQEBAQEBAQH/wAALCAAIAAgBAREA/8QAFAABAAAAAAAAAAAAAAAAAAAAAP/EABQQAQAAAAAAAAAAAA"
    "AAAAAAAAD/2gAIAQEAAD8AP//Z"
)
MAX_BYTES = 4096


class ImageHandler(BaseHTTPRequestHandler):
    hits = {}
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def answer(self, status, content_type, body, extra=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        with self.lock:
            self.hits[self.path] = self.hits.get(self.path, 0) + 1
        if self.path == "/cat.png":
            self.answer(200, "application/octet-stream", PNG)
        elif self.path == "/photo.jpg":
            self.answer(200, "image/jpeg", JPEG)
        elif self.path == "/moved":
            self.answer(302, "text/plain", b"", [("Location", "/photo.jpg")])
        elif self.path == "/loop":
            self.answer(302, "text/plain", b"", [("Location", "/loop")])
        elif self.path == "/to-metadata":
            self.answer(302, "text/plain", b"", [("Location", "http://169.254.169.254/latest/meta-data/")])
        elif self.path == "/big.png":
            self.answer(200, "image/png", PNG + bytes(MAX_BYTES))
        elif self.path == "/page":
            self.answer(200, "image/png", b"<html><body>hello</body></html>")
        else:
            self.answer(404, "text/plain", b"not found")


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # The gateway hangs up on bodies over its limit and on fetches it cancels.
        pass


@pytest.fixture(scope="module")
def image_server():
    server = QuietServer(("127.0.0.1", 0), ImageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def fetching_gateway(emulator, tmp_path_factory):
    keys_file = tmp_path_factory.mktemp("image-keys") / "api-keys"
    keys_file.write_text(f"{API_KEY}\n")
    gateway = start_gateway(
        emulator,
        keys_file,
        "--image-url-allow-cidr", "127.0.0.0/8",
        "--image-url-max-bytes", str(MAX_BYTES),
    )
    yield gateway
    assert gateway.process.stop() == 0, gateway.process.output()[-2000:]


def client_of(gateway):
    return OpenAI(api_key=API_KEY, base_url=gateway.base_url, max_retries=0, timeout=60)


def image_message(*urls):
    parts = [{"type": "text", "text": "Describe"}]
    parts += [{"type": "image_url", "image_url": {"url": url}} for url in urls]
    return [{"role": "user", "content": parts}]


def reply(client, messages, stream):
    response = client.chat.completions.create(model=SONNET, messages=messages, stream=stream)
    if not stream:
        return response.choices[0].message.content
    return "".join(chunk.choices[0].delta.content or "" for chunk in response if chunk.choices)


def refusal(client, messages, stream=False):
    with pytest.raises(openai.BadRequestError) as raised:
        reply(client, messages, stream)
    assert raised.value.status_code == 400
    return raised.value.body["param"], raised.value.body["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_png_and_jpeg_urls_reach_bedrock(emulator, fetching_gateway, image_server, stream):
    content = reply(
        client_of(fetching_gateway),
        image_message(f"{image_server}/cat.png", f"{image_server}/photo.jpg"),
        stream,
    )
    assert content == f"Echo: Describe [image/png {len(PNG)} bytes] [image/jpeg {len(JPEG)} bytes]"
    # Byte for byte what the image server sent.
    assert emulator_observations(emulator)["lastImageSha256"] == [
        hashlib.sha256(PNG).hexdigest(),
        hashlib.sha256(JPEG).hexdigest(),
    ]


@pytest.mark.parametrize("stream", [False, True])
def test_redirects_are_followed(fetching_gateway, image_server, stream):
    content = reply(client_of(fetching_gateway), image_message(f"{image_server}/moved"), stream)
    assert content == f"Echo: Describe [image/jpeg {len(JPEG)} bytes]"


@pytest.mark.parametrize(
    "path, reason",
    [
        ("/loop", "more than 3 redirects"),
        ("/to-metadata", "169.254.169.254 is a link-local address"),
        ("/big.png", f"exceeds the limit of {MAX_BYTES} bytes"),
        ("/page", "not a png, jpeg, gif or webp image"),
        ("/nothing-here.png", "HTTP 404"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_unusable_images_are_refused_naming_the_part(fetching_gateway, image_server, path, reason, stream):
    messages = [{"role": "system", "content": "Be brief."}] + image_message(
        f"{image_server}/cat.png", f"{image_server}{path}"
    )
    param, message = refusal(client_of(fetching_gateway), messages, stream)
    assert param == "messages[1].content[2].image_url"
    assert reason in message


def test_loopback_is_refused_by_default(gateway, image_server):
    before = ImageHandler.hits.get("/cat.png", 0)
    param, message = refusal(client_of(gateway), image_message(f"{image_server}/cat.png"))
    assert param == "messages[0].content[1].image_url"
    assert "loopback address" in message
    assert ImageHandler.hits.get("/cat.png", 0) == before


def test_fetches_are_counted_by_outcome(fetching_gateway, image_server):
    client = client_of(fetching_gateway)
    reply(client, image_message(f"{image_server}/cat.png"), False)
    refusal(client, image_message(f"{image_server}/loop"))
    with urllib.request.urlopen(f"{fetching_gateway.metrics_url}/metrics", timeout=10) as response:
        metrics = response.read().decode()
    fetched = [
        line for line in metrics.splitlines()
        if line.startswith('bedrock_gateway_image_fetches_total{outcome="fetched"}')
    ]
    assert fetched and int(fetched[0].split()[-1]) >= 1
    assert 'bedrock_gateway_image_fetches_total{outcome="too_many_redirects"}' in metrics
