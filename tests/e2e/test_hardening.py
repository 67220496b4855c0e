"""Reliability under load and faults: the real gateway and emulator binaries.

Each test asserts what the client sees and the metrics that count it. The
load is driven with the async `openai` SDK where the SDK's own behaviour
matters (retries, Retry-After, errors raised from streams) and with plain
asyncio sockets where thousands of connections must be opened, held and
dropped exactly. Every figure a test measures is printed on a
`hardening:` line (`pytest -s` shows them; docs/reliability.md records them).
"""

import asyncio
import json
import os
import re
import signal
import time
import urllib.request
from pathlib import Path

import openai
import pytest
from openai import AsyncOpenAI

from conftest import (
    ACCESS_KEY_ID,
    API_KEY,
    REGION,
    SECRET_ACCESS_KEY,
    Gateway,
    Process,
    base_env,
    binary,
)

SONNET = "anthropic.claude-3-5-sonnet-20240620-v1:0"
PATIENCE = 60.0


def report(name, **figures):
    print(f"hardening: {name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


def user(text):
    return [{"role": "user", "content": text}]


def scrape(gateway):
    """Every sample of the gateway's metrics, by `name{labels}`."""
    text = urllib.request.urlopen(f"{gateway.metrics_url}/metrics", timeout=30).read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def sample(samples, name):
    return samples.get(name, 0.0)


def observations(emulator):
    with urllib.request.urlopen(f"{emulator.url}/_emulator/observations", timeout=30) as response:
        return json.load(response)


def emulator_requests(emulator, operation):
    return observations(emulator)["operations"].get(operation, {}).get("requests", 0)


def wait_until(what, check, timeout=PATIENCE, interval=0.1):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(interval)


async def async_wait_until(what, check, timeout=PATIENCE, interval=0.1):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(interval)


def port_of(url):
    return int(url.rsplit(":", 1)[1].split("/")[0])


def tcp_table():
    """Socket inode -> (local port, remote port, state) for every IPv4/IPv6 TCP socket."""
    table = {}
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            table[inode] = (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16), state)
    return table


ESTABLISHED, LISTEN = "01", "0A"


def sockets_of(pid, api_port, upstream_port):
    """The process's sockets from /proc/<pid>/fd: all of them, and by role."""
    inodes = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.append(target[len("socket:["):-1])
    table = tcp_table()
    counts = {"sockets": len(inodes), "clients": 0, "upstream": 0, "listening": 0}
    for inode in inodes:
        local, remote, state = table.get(inode, (0, 0, ""))
        if state == LISTEN:
            counts["listening"] += 1
        elif local == api_port and state != LISTEN:
            counts["clients"] += 1
        elif remote == upstream_port and state == ESTABLISHED:
            counts["upstream"] += 1
    return counts


def launch(emulator, tmp_path, *args, keys=(API_KEY,), bedrock_attempts=1):
    """A gateway of the test's own. As conftest's, but the AWS SDK's attempts
    per Bedrock call are the test's to choose."""
    keys_file = tmp_path / "api-keys"
    keys_file.write_text("".join(f"{key}\n" for key in keys))
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
    process = Process.start(
        [
            binary("BEDROCK_GATEWAY_PROXY_BIN"),
            "--listen", "127.0.0.1:0",
            "--metrics-listen", "127.0.0.1:0",
            "--api-keys-file", str(keys_file),
            "--api-keys-reload-seconds", "1",
            "--log-format", "json",
            "--bedrock-max-attempts", str(bedrock_attempts),
            *args,
        ],
        env,
    )

    def listening(line):
        try:
            record = json.loads(line)
        except ValueError:
            return None
        return record if record.get("message") == "bedrock-gateway-proxy listening" else None

    record = process.wait_for(listening)
    return Gateway(process, f"http://{record['api']}", f"http://{record['metrics']}", keys_file)


def async_client(gateway, key=API_KEY, max_retries=0, timeout=PATIENCE):
    return AsyncOpenAI(api_key=key, base_url=gateway.base_url, max_retries=max_retries, timeout=timeout)


# Raw HTTP/1.1 over asyncio sockets, for thousands of exact connections.


def chat_request(gateway, content, stream=True, key=API_KEY, close=True):
    body = json.dumps({"model": SONNET, "stream": stream, "messages": user(content)}).encode()
    host = gateway.api_url.removeprefix("http://")
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n"
    )
    return head.encode() + body


async def open_connection(gateway):
    host, port = gateway.api_url.removeprefix("http://").rsplit(":", 1)
    return await asyncio.open_connection(host, int(port))


async def read_head(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    headers = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return status, headers


async def read_chunked(reader):
    """The body of a chunked response, and whether it ended with the last chunk."""
    body = bytearray()
    while True:
        size_line = await reader.readline()
        if not size_line:
            return bytes(body), False
        size = int(size_line.strip().split(b";")[0], 16)
        if size == 0:
            await reader.readline()
            return bytes(body), True
        body += await reader.readexactly(size)
        await reader.readexactly(2)


async def read_response(reader):
    status, headers = await read_head(reader)
    if headers.get("transfer-encoding") == "chunked":
        body, complete = await read_chunked(reader)
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        complete = True
    return status, headers, body, complete


# Throttling storms.


def test_bedrock_throttling_storm_reaches_clients_as_429_with_bounded_retries(emulator, tmp_path):
    """Bedrock throttles everything: every client gets a 429 with Retry-After,
    the openai SDK waits that long between its 2 retries, and the attempts
    (the SDK's and, inside the gateway, the AWS SDK's) stay bounded."""
    clients, sdk_retries, aws_attempts = 200, 2, 2
    gateway = launch(emulator, tmp_path, bedrock_attempts=aws_attempts)
    try:
        before = scrape(gateway)
        calls_before = emulator_requests(emulator, "Converse")

        async def storm():
            client = async_client(gateway, max_retries=sdk_retries)

            async def one():
                started = time.monotonic()
                with pytest.raises(openai.RateLimitError) as raised:
                    await client.chat.completions.create(
                        model=SONNET, messages=user("storm [[emu:error=ThrottlingException]]")
                    )
                return raised.value, time.monotonic() - started

            results = await asyncio.gather(*(one() for _ in range(clients)))
            await client.close()
            return results

        started = time.monotonic()
        results = asyncio.run(storm())
        elapsed = time.monotonic() - started
        after = scrape(gateway)
        calls = emulator_requests(emulator, "Converse") - calls_before

        for error, took in results:
            assert error.status_code == 429
            assert error.response.headers["retry-after"] == "2"
            assert error.body["code"] == "ThrottlingException"
            assert error.body["type"] == "rate_limit_error"
            # Two waits of the 2 s the gateway asked for.
            assert took >= 2 * 2 * 0.95, took
        client_attempts = clients * (1 + sdk_retries)
        answered_429 = sample(
            after, 'bedrock_gateway_http_requests_total{method="POST",route="/v1/chat/completions",status="429"}'
        ) - sample(before, 'bedrock_gateway_http_requests_total{method="POST",route="/v1/chat/completions",status="429"}')
        assert answered_429 == client_attempts, "each SDK attempt reached the gateway once"
        throttled = sample(after, 'bedrock_gateway_upstream_errors_total{error_type="ThrottlingException"}') - sample(
            before, 'bedrock_gateway_upstream_errors_total{error_type="ThrottlingException"}'
        )
        assert throttled == client_attempts
        assert client_attempts <= calls <= client_attempts * aws_attempts, calls
        report(
            "bedrock throttling storm",
            clients=clients,
            client_attempts=client_attempts,
            bedrock_calls=calls,
            aws_sdk_retries=calls - client_attempts,
            seconds=round(elapsed, 1),
        )
    finally:
        assert gateway.process.stop() == 0


def test_per_key_rate_limit_storm_refuses_the_excess_before_bedrock(emulator, tmp_path):
    """A burst far beyond the key's requests per minute: the bucket's worth
    passes, the rest is refused with OpenAI's rate-limit error and a
    Retry-After that, honoured, gets the next request through."""
    per_minute, burst = 30, 150
    gateway = launch(emulator, tmp_path, "--key-requests-per-minute", str(per_minute))
    try:
        calls_before = emulator_requests(emulator, "Converse")

        async def storm():
            client = async_client(gateway)

            async def one():
                try:
                    await client.chat.completions.create(model=SONNET, messages=user("burst"))
                    return None
                except openai.RateLimitError as error:
                    return error

            started = time.monotonic()
            results = await asyncio.gather(*(one() for _ in range(burst)))
            elapsed = time.monotonic() - started
            await client.close()
            return results, elapsed

        results, elapsed = asyncio.run(storm())
        refused = [error for error in results if error is not None]
        admitted = burst - len(refused)
        # The full bucket, plus one token per 2 s the burst lasted.
        assert per_minute <= admitted <= per_minute + int(elapsed * per_minute / 60) + 1, (admitted, elapsed)
        for error in refused:
            assert error.status_code == 429
            assert error.body["type"] == "requests"
            assert error.body["code"] == "rate_limit_exceeded"
            retry_after = int(error.response.headers["retry-after"])
            retry_after_ms = int(error.response.headers["retry-after-ms"])
            assert 1 <= retry_after <= 60 // per_minute
            assert retry_after == -(-retry_after_ms // 1000)
        assert emulator_requests(emulator, "Converse") - calls_before == admitted
        samples = scrape(gateway)
        assert sample(samples, 'bedrock_gateway_key_limit_rejections_total{limit="requests_per_minute"}') == len(refused)

        # An SDK client that honours Retry-After gets through, with few attempts.
        async def patient():
            client = async_client(gateway, max_retries=3)
            before = scrape(gateway)
            started = time.monotonic()
            completion = await client.chat.completions.create(model=SONNET, messages=user("patient"))
            took = time.monotonic() - started
            await client.close()
            return completion, took, before

        completion, took, before = asyncio.run(patient())
        assert completion.choices[0].message.content == "Echo: patient"
        attempts = sample(
            scrape(gateway), 'bedrock_gateway_key_limit_rejections_total{limit="requests_per_minute"}'
        ) - sample(before, 'bedrock_gateway_key_limit_rejections_total{limit="requests_per_minute"}') + 1
        assert attempts <= 2, "one wait of Retry-After is enough"
        report(
            "per-key limit storm",
            limit_per_minute=per_minute,
            burst=burst,
            admitted=admitted,
            refused=len(refused),
            burst_seconds=round(elapsed, 2),
            patient_client_attempts=int(attempts),
            patient_client_seconds=round(took, 2),
        )
    finally:
        assert gateway.process.stop() == 0


# Upstream faults.


def test_bedrock_5xx_bursts_map_to_their_statuses(gateway, emulator):
    """Concurrent bursts of Bedrock server errors, streamed and not, each
    reach the client with its own status, counted by exception."""
    cases = {
        "InternalServerException": 502,
        "ModelErrorException": 502,
        "ServiceUnavailableException": 503,
        "ModelNotReadyException": 503,
        "ModelTimeoutException": 504,
    }
    per_case = 20
    before = scrape(gateway)

    async def burst():
        client = async_client(gateway)

        async def one(exception, stream):
            try:
                await client.chat.completions.create(
                    model=SONNET, messages=user(f"[[emu:error={exception}]]"), stream=stream
                )
            except openai.APIStatusError as error:
                return exception, error
            raise AssertionError(f"{exception} did not fail")

        jobs = [one(exception, i % 2 == 0) for exception in cases for i in range(per_case)]
        results = await asyncio.gather(*jobs)
        await client.close()
        return results

    for exception, error in asyncio.run(burst()):
        assert error.status_code == cases[exception], (exception, error.status_code)
        assert error.body["code"] == exception
        assert error.body["type"] == "api_error"
        if cases[exception] == 503:
            assert error.response.headers["retry-after"] == "2"
    after = scrape(gateway)
    for exception in cases:
        name = f'bedrock_gateway_upstream_errors_total{{error_type="{exception}"}}'
        assert sample(after, name) - sample(before, name) == per_case, exception
    for status in sorted(set(cases.values())):
        name = f'bedrock_gateway_http_requests_total{{method="POST",route="/v1/chat/completions",status="{status}"}}'
        expected = per_case * sum(1 for code in cases.values() if code == status)
        assert sample(after, name) - sample(before, name) == expected, status
    assert sample(after, "bedrock_gateway_streams_in_flight") == 0


def test_stream_faults_end_with_an_error_chunk_and_a_clean_close(emulator, tmp_path):
    """Mid-stream exceptions, stalls and connection resets end the stream with
    an OpenAI error event and a complete HTTP response; a slow first token
    within the idle timeout still succeeds."""
    gateway = launch(emulator, tmp_path, "--stream-idle-timeout-seconds", "2")
    try:
        before = scrape(gateway)

        async def faults():
            async def raw(content):
                reader, writer = await open_connection(gateway)
                writer.write(chat_request(gateway, content))
                status, headers, body, complete = await read_response(reader)
                writer.close()
                events = [e.removeprefix("data: ") for e in body.decode().split("\n\n") if e]
                return status, events, complete

            mid = [raw("a b c d e [[emu:stream-error=modelStreamErrorException after=2]]") for _ in range(10)]
            stalled = [raw("stall [[emu:delay-between=5000]]") for _ in range(5)]
            reset = [raw("one two three four [[emu:reset=2 delay-between=300]]") for _ in range(5)]
            results = await asyncio.gather(*mid, *stalled, *reset)

            client = async_client(gateway)
            started = time.monotonic()
            stream = await client.chat.completions.create(
                model=SONNET, messages=user("slow start [[emu:delay-first=1500]]"), stream=True
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            slow_took = time.monotonic() - started
            with pytest.raises(openai.APIError) as raised:
                stream = await client.chat.completions.create(
                    model=SONNET, messages=user("cut [[emu:reset=before]]"), stream=True
                )
                async for _ in stream:
                    pass
            await client.close()
            return results[:10], results[10:15], results[15:], text, slow_took, raised.value

        mid, stalled, reset, slow_text, slow_took, reset_error = asyncio.run(faults())
        for (status, events, complete), code, content in [
            *((r, "ModelStreamErrorException", "Echo: a ") for r in mid),
            *((r, "BedrockStreamIdle", None) for r in stalled),
            *((r, "BedrockUnreachable", "Echo: one ") for r in reset),
        ]:
            assert status == 200, (code, events)
            assert complete, "the chunked response ends with its last chunk"
            assert "[DONE]" not in events
            last = json.loads(events[-1])
            assert last["error"]["code"] == code, last
            assert last["error"]["type"] == "api_error"
            if content is not None:
                chunks = [json.loads(e) for e in events[:-1]]
                assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == content
        assert slow_text == "Echo: slow start"
        assert slow_took >= 1.5
        assert reset_error.status_code == 502
        assert reset_error.body["code"] == "BedrockUnreachable"
        assert "Connection reset by peer" in reset_error.body["message"]

        after = scrape(gateway)

        def delta(name):
            return sample(after, name) - sample(before, name)

        assert delta('bedrock_gateway_upstream_errors_total{error_type="ModelStreamErrorException"}') == 10
        assert delta('bedrock_gateway_upstream_errors_total{error_type="BedrockStreamIdle"}') == 5
        assert delta('bedrock_gateway_upstream_errors_total{error_type="BedrockUnreachable"}') == 6
        # The slow first token is counted, in a bucket above 1 s.
        ttft = f'bedrock_gateway_time_to_first_token_seconds_bucket{{model="{SONNET}",le="1"}}'
        count = f'bedrock_gateway_time_to_first_token_seconds_count{{model="{SONNET}"}}'
        assert delta(count) - delta(ttft) >= 1
        assert sample(after, "bedrock_gateway_streams_in_flight") == 0
        report("stream faults", slow_first_token_seconds=round(slow_took, 2))
    finally:
        assert gateway.process.stop() == 0


# Client disconnects.


def test_a_thousand_dropped_streams_release_every_socket_and_bedrock_call(emulator, tmp_path):
    streams = 1000
    gateway = launch(emulator, tmp_path)
    try:
        pid, emulator_pid = gateway.process.popen.pid, emulator.process.popen.pid
        api_port, emulator_port = port_of(gateway.api_url), port_of(emulator.url)
        # Warm up: the model list and one call, so pooled connections exist at baseline.
        asyncio.run(_warm_up(gateway))
        wait_until("the warm-up settles", lambda: scrape(gateway)["bedrock_gateway_streams_in_flight"] == 0)
        baseline = sockets_of(pid, api_port, emulator_port)
        emulator_baseline = len([f for f in os.listdir(f"/proc/{emulator_pid}/fd")])
        calls_before = emulator_requests(emulator, "ConverseStream")

        async def hold_and_drop():
            async def open_stream():
                reader, writer = await open_connection(gateway)
                writer.write(chat_request(gateway, "long [[emu:words=3000 delay-between=20]]"))
                status, _ = await read_head(reader)
                assert status == 200
                first = await reader.readuntil(b"\n\n")
                assert b"data: " in first
                return writer

            writers = []
            for _ in range(streams // 100):
                writers += await asyncio.gather(*(open_stream() for _ in range(100)))
            peak = scrape(gateway)["bedrock_gateway_streams_in_flight"]
            held = sockets_of(pid, api_port, emulator_port)
            dropped_at = time.monotonic()
            for writer in writers:
                writer.transport.abort()
            return peak, held, dropped_at

        started = time.monotonic()
        peak, held, dropped_at = asyncio.run(hold_and_drop())
        gauges = wait_until(
            "the in-flight gauges are back to 0",
            lambda: (
                lambda m: m["bedrock_gateway_streams_in_flight"] == 0
                and m["bedrock_gateway_http_requests_in_flight"] == 0
                and m
            )(scrape(gateway)),
        )
        gauge_seconds = time.monotonic() - dropped_at
        settled = wait_until(
            "the sockets are back to baseline",
            # Sockets of the metrics scrapes above may still be closing: wait for them too.
            lambda: (
                lambda s: s["clients"] == 0
                and s["upstream"] <= baseline["upstream"]
                and s["sockets"] <= baseline["sockets"]
                and s
            )(sockets_of(pid, api_port, emulator_port)),
        )
        sockets_seconds = time.monotonic() - dropped_at
        emulator_after = wait_until(
            "the emulator's sockets are back to baseline",
            lambda: (lambda n: n <= emulator_baseline and n)(len(os.listdir(f"/proc/{emulator_pid}/fd"))),
        )
        assert gauges
        assert peak == streams
        assert held["clients"] >= streams and held["upstream"] >= streams
        assert settled["sockets"] <= baseline["sockets"]
        assert settled["listening"] == baseline["listening"]
        assert emulator_requests(emulator, "ConverseStream") - calls_before == streams
        report(
            "dropped streams",
            streams=streams,
            peak_streams_in_flight=int(peak),
            proxy_sockets_baseline=baseline,
            proxy_sockets_held=held,
            proxy_sockets_after=settled,
            emulator_fds_baseline=emulator_baseline,
            emulator_fds_after=emulator_after,
            gauge_zero_after_s=round(gauge_seconds, 2),
            sockets_baseline_after_s=round(sockets_seconds, 2),
            total_s=round(time.monotonic() - started, 1),
        )
    finally:
        assert gateway.process.stop() == 0


async def _warm_up(gateway):
    client = async_client(gateway)
    await client.models.list()
    stream = await client.chat.completions.create(model=SONNET, messages=user("warm"), stream=True)
    async for _ in stream:
        pass
    await client.close()


# Graceful shutdown.


def test_sigterm_under_500_streams_finishes_them_refuses_new_work_and_exits_0(emulator, tmp_path):
    streams, probes, grace = 500, 20, 40
    gateway = launch(emulator, tmp_path, "--shutdown-grace-seconds", str(grace))
    try:

        async def under_load():
            async def stream():
                reader, writer = await open_connection(gateway)
                writer.write(chat_request(gateway, "drain me [[emu:words=60 delay-between=100]]"))
                try:
                    status, _ = await read_head(reader)
                except asyncio.IncompleteReadError as error:
                    raise AssertionError(f"stream closed before its head at {time.monotonic()}") from error
                body, complete = await read_chunked(reader)
                writer.close()
                return status, body, complete

            tasks = [asyncio.create_task(stream()) for _ in range(streams)]
            await async_wait_until(
                "every stream is open",
                lambda: scrape(gateway)["bedrock_gateway_streams_in_flight"] == streams,
            )
            # Keep-alive connections opened before SIGTERM (well within the
            # keep-alive timeout), for requests sent after it.
            idle = []
            for _ in range(probes):
                reader, writer = await open_connection(gateway)
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                status, _, _, _ = await read_response(reader)
                assert status == 200
                idle.append((reader, writer))
            signalled = time.monotonic()
            gateway.process.popen.send_signal(signal.SIGTERM)
            await async_wait_until(
                "the gateway drains", lambda: "shutting down; draining" in gateway.process.output()
            )
            refused = []
            fresh = [await open_connection(gateway) for _ in range(probes)]
            for reader, writer in idle + fresh:
                writer.write(chat_request(gateway, "too late", stream=False, close=False))
                try:
                    status, headers, body, _ = await read_response(reader)
                except asyncio.IncompleteReadError as error:
                    raise AssertionError(f"probe {len(refused)} closed at {time.monotonic() - signalled}") from error
                refused.append((status, headers, json.loads(body)))
                writer.close()
            draining = scrape(gateway)
            results = await asyncio.gather(*tasks)
            finished = time.monotonic() - signalled
            return refused, draining, results, finished

        refused, draining, results, finished = asyncio.run(under_load())
        exit_code = gateway.process.popen.wait(timeout=grace + 30)
        exited = gateway.process.output()
        for status, headers, body in refused:
            assert status == 503
            assert headers["connection"] == "close", "clients are sent elsewhere"
            assert body["error"]["code"] == "shutting_down"
        completed = 0
        for status, body, complete in results:
            assert status == 200
            assert complete and body.endswith(b"data: [DONE]\n\n"), body[-200:]
            completed += 1
        assert exit_code == 0, exited[-2000:]
        assert '"stopped"' in exited
        assert sample(
            draining, 'bedrock_gateway_http_requests_total{method="POST",route="/v1/chat/completions",status="503"}'
        ) == 2 * probes
        assert 0 < draining["bedrock_gateway_streams_in_flight"] <= streams
        report(
            "graceful shutdown",
            streams=streams,
            streams_finished=completed,
            new_requests_refused_503=len(refused),
            streams_in_flight_when_refusing=int(draining["bedrock_gateway_streams_in_flight"]),
            all_finished_after_sigterm_s=round(finished, 2),
            exit_code=exit_code,
        )
    finally:
        gateway.process.stop()


# Key rotation.


def test_key_rotation_under_load_drops_no_valid_request(emulator, tmp_path):
    old_key, new_key = "rotation-old-key-0001", "rotation-new-key-0002"
    gateway = launch(emulator, tmp_path, keys=(old_key,))
    keys_file = gateway.keys_file

    def write_keys(*keys):
        # As a Secret volume changes: the new file is swapped in at once.
        staged = keys_file.with_suffix(".new")
        staged.write_text("".join(f"{key}\n" for key in keys))
        os.replace(staged, keys_file)

    try:

        async def rotate():
            clients = {key: async_client(gateway, key) for key in (old_key, new_key)}
            valid = [old_key]
            counts = {"old": 0, "new": 0, "failed": 0, "phase": "old only"}
            failures = []
            stop = asyncio.Event()

            async def worker(index):
                n = 0
                while not stop.is_set():
                    key = valid[n % len(valid)]
                    n += 1
                    try:
                        if n % 2:
                            completion = await clients[key].chat.completions.create(model=SONNET, messages=user("rotate"))
                            assert completion.choices[0].message.content == "Echo: rotate"
                        else:
                            stream = await clients[key].chat.completions.create(
                                model=SONNET, messages=user("rotate stream"), stream=True
                            )
                            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
                            assert text == "Echo: rotate stream"
                        counts["old" if key == old_key else "new"] += 1
                    except Exception as error:  # every failure is reported below
                        counts["failed"] += 1
                        failures.append((counts["phase"], key == old_key, repr(error)))

            async def accepted(key):
                try:
                    await clients[key].models.list()
                    return True
                except openai.AuthenticationError:
                    return False

            workers = [asyncio.create_task(worker(i)) for i in range(8)]
            await asyncio.sleep(2)
            phases = {"old only": dict(counts)}

            write_keys(old_key, new_key)
            counts["phase"] = "overlap"
            written = time.monotonic()
            probes_401 = 0
            while not await accepted(new_key):
                probes_401 += 1
                assert time.monotonic() - written < PATIENCE
                await asyncio.sleep(0.1)
            new_accepted_after = time.monotonic() - written
            valid.append(new_key)
            await asyncio.sleep(2)
            phases["overlap"] = dict(counts)

            valid.remove(old_key)
            await asyncio.sleep(0.5)  # requests started with the old key finish
            write_keys(new_key)
            counts["phase"] = "new only"
            written = time.monotonic()
            while await accepted(old_key):
                assert time.monotonic() - written < PATIENCE
                await asyncio.sleep(0.1)
            old_refused_after = time.monotonic() - written
            probes_401 += 1
            await asyncio.sleep(2)
            stop.set()
            await asyncio.gather(*workers)
            phases["new only"] = dict(counts)
            with pytest.raises(openai.AuthenticationError):
                await clients[old_key].chat.completions.create(model=SONNET, messages=user("old"))
            probes_401 += 1
            for client in clients.values():
                await client.close()
            return counts, failures, phases, probes_401, new_accepted_after, old_refused_after

        before = scrape(gateway)
        counts, failures, phases, probes_401, new_after, old_after = asyncio.run(rotate())
        after = scrape(gateway)
        assert failures == [], failures[:5]
        assert counts["old"] > 0 and counts["new"] > 0
        assert phases["new only"]["new"] > phases["overlap"]["new"], "traffic ran after the old key went"
        assert after["bedrock_gateway_api_keys_loaded"] == 1
        unauthorised = sum(
            value - sample(before, name)
            for name, value in after.items()
            if name.startswith("bedrock_gateway_http_requests_total{") and 'status="401"' in name
        )
        assert unauthorised == probes_401, "only the deliberate probes were refused"
        report(
            "key rotation",
            requests_old_key=counts["old"],
            requests_new_key=counts["new"],
            failed=counts["failed"],
            by_phase={name: {"old": p["old"], "new": p["new"]} for name, p in phases.items()},
            new_key_accepted_after_s=round(new_after, 2),
            old_key_refused_after_s=round(old_after, 2),
            probes_refused_401=probes_401,
        )
    finally:
        assert gateway.process.stop() == 0
