#!/usr/bin/env python3
"""Self-test of the replay teacher: python3 test/test_replay_teacher.py

Starts test/replay_teacher.py on a free port in a subprocess, exercises every
endpoint and fault over HTTP, stops it, and prints
`replay_teacher: N passed, N failed` (exit status 1 on any failure).
"""

import http.client
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "replay_teacher.py")
CQA = os.path.join(HERE, "data", "cqa_sample.jsonl")
SVAMP = os.path.join(HERE, "data", "svamp_sample.jsonl")
NO_ANSWER = "I have no recorded answer for this question."
OPENAI = "/v1/chat/completions"
OLLAMA = "/api/chat"

results = {"passed": 0, "failed": 0}


def check(name, condition, detail=""):
    if condition:
        results["passed"] += 1
    else:
        results["failed"] += 1
        print(f"FAIL {name} {detail}".rstrip())


def read_rows(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


CQA_ROWS = read_rows(CQA)
SVAMP_ROWS = read_rows(SVAMP)
# Every row the server loads by default: all of data/*.jsonl.
DEFAULT_ROW_COUNT = sum(len(read_rows(os.path.join(HERE, "data", name)))
                        for name in os.listdir(os.path.join(HERE, "data"))
                        if name.endswith(".jsonl"))


# Not recorded inputs: with recorded ones, an unknown question would fall back to
# the answer of the longest recorded input in the prompt, i.e. of an example.
EXAMPLES = [("What is 2 plus 3?", "2 plus 3 is 5.", "5"),
            ("Where do fish live?\nAnswer Choices:\n(a) sky\n(b) water",
             "Fish need water.", "(b) water")]


def few_shot_prompt(question):
    shots = [f"Q: {q}\nA: {rationale} So the answer is {label}."
             for q, rationale, label in EXAMPLES]
    return "\n\n".join(["Answer the question."] + shots + [f"Q: {question}\nA:"])


def messages_for(question):
    return [{"role": "system", "content": "You are a careful teacher."},
            {"role": "user", "content": few_shot_prompt(question)}]


# --------------------------------------------------------------------------
# Server process and HTTP helpers

class Server:
    """A replay teacher subprocess on a free port."""

    def __init__(self, *args):
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, SCRIPT, "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 10)
        self.banner = self.proc.stdout.readline().strip() if ready else ""
        if not self.banner.startswith("replay teacher listening on "):
            self.proc.kill()
            raise RuntimeError(f"server did not start: {self.banner!r}")
        address = self.banner.split()[4]
        self.port = int(address.rsplit(":", 1)[1])

    def stop(self, signum=signal.SIGTERM):
        """Signal the server; returns (exit status, seconds it took)."""
        start = time.monotonic()
        self.proc.send_signal(signum)
        try:
            rc = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        return rc, time.monotonic() - start

    def error_output(self):
        self.stderr.seek(0)
        return self.stderr.read().decode()


def call(port, method, path, body=None, headers=None, timeout=10, conn=None):
    """One request; returns (status, headers dict, body bytes)."""
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        if own:
            conn.close()


def chat(port, path, question, conn=None, headers=None, **extra):
    body = {"model": "replay-model", "messages": messages_for(question), **extra}
    return call(port, "POST", path, body, headers, conn=conn)


def stats(port):
    return json.loads(call(port, "GET", "/stats")[2])


def reset(port):
    call(port, "POST", "/stats/reset", b"")


def outcome_of(port, path, question):
    """'200', '500', ..., or 'drop' when the connection closes without a reply."""
    try:
        return str(chat(port, path, question)[0])
    except (http.client.RemoteDisconnected, ConnectionError):
        return "drop"


# --------------------------------------------------------------------------
# Tests (each takes the port of the shared server)

def test_health(port):
    status, headers, body = call(port, "GET", "/health")
    check("health", status == 200 and body == b"ok", f"{status} {body!r}")


def test_openai_exact(port):
    row = CQA_ROWS[7]
    status, headers, body = chat(port, OPENAI, row["input"], temperature=0,
                                 max_tokens=256)
    reply = json.loads(body)
    choice = reply["choices"][0]
    check("openai status", status == 200, status)
    check("openai content verbatim",
          choice["message"] == {"role": "assistant", "content": row["teacher_output"]})
    check("openai envelope",
          reply["id"].startswith("replay-") and reply["object"] == "chat.completion"
          and reply["model"] == "replay-model" and isinstance(reply["created"], int)
          and choice["index"] == 0 and choice["finish_reason"] == "stop", reply)
    words = sum(len(m["content"].split()) for m in messages_for(row["input"]))
    usage = reply["usage"]
    check("openai usage",
          usage["prompt_tokens"] == words
          and usage["completion_tokens"] == len(row["teacher_output"].split())
          and usage["total_tokens"] == words + usage["completion_tokens"], usage)
    check("openai content type", headers["content-type"] == "application/json")


def test_substring_fallback(port):
    row = SVAMP_ROWS[3]
    body = {"messages": [{"role": "user",
                          "content": f"Please solve:\n{row['input']}\nThanks!"}]}
    reply = json.loads(call(port, "POST", OPENAI, body)[2])
    check("substring fallback",
          reply["choices"][0]["message"]["content"] == row["teacher_output"])


def test_last_user_message(port):
    first, last = CQA_ROWS[0], CQA_ROWS[1]
    body = {"messages": [{"role": "user", "content": f"Q: {first['input']}\nA:"},
                         {"role": "assistant", "content": "hmm"},
                         {"role": "user", "content": f"Q: {last['input']}\nA:"}]}
    reply = json.loads(call(port, "POST", OPENAI, body)[2])
    check("last user message wins",
          reply["choices"][0]["message"]["content"] == last["teacher_output"])


def test_unknown(port):
    before = stats(port)["unknown"]
    status, _, body = chat(port, OPENAI, "What is the airspeed of a swallow?")
    content = json.loads(body)["choices"][0]["message"]["content"]
    check("unknown answer", status == 200 and content == NO_ANSWER, content)
    check("unknown counted", stats(port)["unknown"] == before + 1)


def test_bad_requests(port):
    status, _, body = call(port, "POST", OPENAI, b"{not json")
    error = json.loads(body)["error"]
    check("openai not json", status == 400
          and error["type"] == "invalid_request_error" and error["message"], body)
    status, _, body = call(port, "POST", OPENAI, {"model": "m"})
    check("openai no messages", status == 400 and "messages" in body.decode(), body)
    status, _, body = call(port, "POST", OPENAI,
                           {"messages": [{"role": "system", "content": "x"}]})
    check("openai no user message", status == 400, status)
    status, _, body = call(port, "POST", OLLAMA, b"[1, 2")
    check("ollama not json", status == 400
          and isinstance(json.loads(body)["error"], str), body)


def test_not_found(port):
    for method, path in [("POST", "/v2/chat"), ("GET", OPENAI),
                         ("POST", "/faults/p500=1/v1/completions"), ("GET", "/")]:
        status, _, body = call(port, method, path, b"{}" if method == "POST" else None)
        check(f"404 {method} {path}",
              status == 404 and "error" in json.loads(body), f"{status} {body!r}")


def test_ollama_non_streaming(port):
    row = CQA_ROWS[11]
    status, headers, body = chat(port, OLLAMA, row["input"], stream=False,
                                 options={"temperature": 0})
    reply = json.loads(body)
    check("ollama stream=false",
          status == 200 and reply["done"] is True and reply["done_reason"] == "stop"
          and reply["message"] == {"role": "assistant", "content": row["teacher_output"]}
          and reply["model"] == "replay-model" and reply["created_at"].endswith("Z")
          and reply["eval_count"] == len(row["teacher_output"].split())
          and reply["prompt_eval_count"] > 0, reply)


def test_ollama_streaming(port):
    row = SVAMP_ROWS[9]
    status, headers, body = chat(port, OLLAMA, row["input"])
    lines = [json.loads(l) for l in body.decode().splitlines()]
    chunks, final = lines[:-1], lines[-1]
    check("ollama stream content type",
          headers["content-type"] == "application/x-ndjson", headers)
    check("ollama stream chunks",
          len(chunks) > 2 and all(c["done"] is False for c in chunks)
          and "".join(c["message"]["content"] for c in chunks) == row["teacher_output"])
    check("ollama stream final",
          final["done"] is True and final["message"]["content"] == ""
          and final["eval_count"] == len(row["teacher_output"].split())
          and final["prompt_eval_count"] > 0, final)


def test_latency(port):
    row = CQA_ROWS[2]
    start = time.monotonic()
    status, _, body = chat(port, "/faults/latency_ms=300" + OPENAI, row["input"])
    elapsed = time.monotonic() - start
    check("latency", status == 200 and elapsed >= 0.3, f"{elapsed:.3f}s")
    start = time.monotonic()
    status, _, _ = chat(port, "/faults/latency_ms=300,p500=1" + OLLAMA, row["input"])
    elapsed = time.monotonic() - start
    check("latency on faults too", status == 500 and elapsed >= 0.3, f"{elapsed:.3f}s")


def test_p500(port):
    status, _, body = chat(port, "/faults/p500=1" + OPENAI, CQA_ROWS[3]["input"])
    check("p500 openai", status == 500 and json.loads(body)["error"]["message"], body)
    status, _, body = chat(port, "/faults/p500=1" + OLLAMA, CQA_ROWS[3]["input"])
    check("p500 ollama", status == 500 and json.loads(body)["error"], body)


def test_p429(port):
    status, headers, body = chat(port, "/faults/p429=1" + OPENAI, CQA_ROWS[4]["input"])
    check("p429", status == 429 and headers.get("retry-after") == "1"
          and "error" in json.loads(body), f"{status} {headers}")
    status, headers, _ = chat(port, "/faults/p429=1,retry_after=7" + OLLAMA,
                              CQA_ROWS[4]["input"])
    check("p429 retry_after", status == 429 and headers.get("retry-after") == "7")


def test_malformed(port):
    for api in (OPENAI, OLLAMA):
        status, _, body = chat(port, "/faults/malformed=1" + api, CQA_ROWS[5]["input"])
        try:
            json.loads(body)
            valid = True
        except ValueError:
            valid = False
        check(f"malformed {api}", status == 200 and body and not valid, body[:80])


def test_drop(port):
    before = stats(port)["drop"]
    for api in (OPENAI, OLLAMA):
        check(f"drop {api}", outcome_of(port, "/faults/drop=1" + api,
                                        CQA_ROWS[6]["input"]) == "drop")
    check("drop counted", stats(port)["drop"] == before + 2)


def test_hang(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=0.5)
    start = time.monotonic()
    try:
        chat(port, "/faults/hang=1" + OPENAI, CQA_ROWS[8]["input"], conn=conn)
        hung = False
    except socket.timeout:
        hung = True
    check("hang times the client out", hung)
    served = call(port, "GET", "/health")[0] == 200
    check("other requests served during a hang", served)
    status, _, body = chat(port, "/faults/hang=1,hang_s=0.3" + OPENAI,
                           CQA_ROWS[8]["input"])
    elapsed = time.monotonic() - start
    check("short hang then answer", status == 200 and elapsed >= 0.8
          and json.loads(body)["choices"][0]["message"]["content"]
          == CQA_ROWS[8]["teacher_output"], f"{status} {elapsed:.2f}s")
    conn.close()
    deadline = time.monotonic() + 2
    while stats(port)["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.05)
    check("hang ends when the client goes away", stats(port)["in_flight"] == 0)


def test_api_key(port):
    path = "/faults/key=sk-test-123" + OPENAI
    question = CQA_ROWS[9]["input"]
    status, _, body = chat(port, path, question)
    check("key missing -> 401", status == 401, status)
    status, _, body = chat(port, path, question,
                           headers={"Authorization": "Bearer sk-live-SECRET42"})
    error = json.loads(body)["error"]
    check("key wrong -> 401 echoing the key",
          status == 401 and error["message"].startswith(
              "Incorrect API key provided: sk-live-SECRET42"), body)
    status, _, body = chat(port, "/faults/key=sk-test-123" + OLLAMA, question,
                           headers={"Authorization": "Bearer nope"}, stream=False)
    check("ollama key wrong -> 401", status == 401
          and "nope" in json.loads(body)["error"], body)
    status, _, body = chat(port, path, question,
                           headers={"Authorization": "Bearer sk-test-123"})
    check("key right -> 200", status == 200, status)


def content_bytes(body):
    """The bytes of choices[0].message.content in a raw OpenAI body."""
    start = body.index(b'"content": "') + len(b'"content": "')
    return body[start:body.index(b'"}, "finish_reason"', start)]


def test_echo(port):
    question = "caf%C3%A9 %ED%A0%80 %FF \\u0000 \\ud800 say \"hi\". So the answer is (a)."
    status, _, body = chat(port, "/faults/echo=1" + OPENAI, question)
    check("echo: raw bytes and escapes as asked",
          status == 200 and content_bytes(body) ==
          b'caf\xc3\xa9 \xed\xa0\x80 \xff \\u0000 \\ud800 say \\"hi\\". So the answer is (a).',
          body)
    status, _, body = chat(port, "/faults/echo=1" + OPENAI, "just text. So the answer is (b).")
    reply = json.loads(body)
    check("echo: valid text is a valid reply",
          reply["choices"][0]["message"]["content"] == "just text. So the answer is (b)."
          and reply["usage"]["completion_tokens"] == 7, body)
    status, _, body = chat(port, "/faults/echo=1" + OLLAMA, "a%E2%80%99b", stream=False)
    check("echo: ollama", status == 200 and
          json.loads(body)["message"]["content"] == "a\u2019b", body)
    check("echo: counted", stats(port)["echo"] >= 3, stats(port))


def test_pad_bytes(port):
    question = CQA_ROWS[4]["input"]
    status, _, body = chat(port, "/faults/pad_bytes=3000000" + OPENAI, question)
    content = json.loads(body)["choices"][0]["message"]["content"]
    check("pad_bytes: the recorded reply and N more bytes",
          status == 200 and content == CQA_ROWS[4]["teacher_output"] + "x" * 3000000,
          len(content))
    status, _, body = chat(port, "/faults/echo=1,pad_bytes=3" + OPENAI, "abc")
    check("pad_bytes: with echo", content_bytes(body) == b"abcxxx", body)


def test_error_status(port):
    status, _, body = chat(port, "/faults/echo=1,error_status=200" + OPENAI, "sk-%41BC failed")
    check("error_status=200: an error object in a 2xx reply",
          status == 200 and json.loads(body)["error"]["message"] == "sk-ABC failed", body)
    status, _, body = chat(port, "/faults/echo=1,error_status=400" + OLLAMA, "nope", stream=False)
    check("error_status=400: ollama's error shape",
          status == 400 and json.loads(body) == {"error": "nope"}, body)
    status, _, body = chat(port, "/faults/error_status=503" + OPENAI, CQA_ROWS[0]["input"])
    check("error_status without echo: the recorded reply as the message",
          status == 503 and json.loads(body)["error"]["message"] ==
          CQA_ROWS[0]["teacher_output"], body)


def test_bad_spec(port):
    question = CQA_ROWS[0]["input"]
    status, _, body = chat(port, "/faults/p500=0.1,colour=red" + OPENAI, question)
    check("unknown spec key", status == 400 and "colour" in body.decode(), body)
    status, _, body = chat(port, "/faults/p500=lots" + OLLAMA, question)
    check("bad spec value", status == 400 and "p500" in body.decode(), body)
    status, _, body = chat(port, "/faults/p500=0.6,drop=0.6" + OPENAI, question)
    check("probabilities over 1", status == 400, status)
    status, _, body = chat(port, "/faults/" + OPENAI, question)
    check("empty spec", status == 200, status)
    for spec in ("echo=2", "error_status=99", "error_status=600", "pad_bytes=-1"):
        status, _, body = chat(port, f"/faults/{spec}" + OPENAI, question)
        check(f"bad spec {spec}", status == 400, (status, body))


def outcome_sequence(port, spec, question, n=24):
    return [outcome_of(port, f"/faults/{spec}" + OPENAI, question) for _ in range(n)]


def test_deterministic_faults(port):
    question = SVAMP_ROWS[20]["input"]
    reset(port)
    first = outcome_sequence(port, "p500=0.5,seed=3", question)
    reset(port)
    second = outcome_sequence(port, "p500=0.5,seed=3", question)
    check("same requests, same decisions", first == second, f"{first} {second}")
    check("retries get fresh draws", {"200", "500"} <= set(first), first)
    reset(port)
    other = outcome_sequence(port, "p500=0.5,seed=4", question)
    check("seed changes decisions", other != first)


def test_fault_buckets(port):
    reset(port)
    spec = "p500=0.2,p429=0.2,malformed=0.2,drop=0.1,seed=11"
    n = 400
    for i in range(n):
        outcome_of(port, f"/faults/{spec}" + OPENAI, f"synthetic question {i}")
    counts = stats(port)
    expected = {"500": 0.2, "429": 0.2, "malformed": 0.2, "drop": 0.1, "unknown": 0.3}
    for outcome, p in expected.items():
        share = counts[outcome] / n
        check(f"bucket {outcome}", abs(share - p) < 0.07, f"{share:.3f} vs {p}")
    check("bucket total", counts["requests"] == n, counts)


def test_keep_alive(port):
    reset(port)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    row = CQA_ROWS[12]
    statuses = [chat(port, OPENAI, row["input"], conn=conn)[0],
                call(port, "POST", OPENAI, b"oops", conn=conn)[0],
                call(port, "POST", "/nowhere", b"{}", conn=conn)[0],
                chat(port, "/faults/p429=1" + OPENAI, row["input"], conn=conn)[0]]
    body = json.dumps({"messages": messages_for(row["input"])}).encode()
    chunked = iter([body[:100], body[100:]])  # http.client sends it chunked
    statuses.append(call(port, "POST", OLLAMA, chunked, conn=conn)[0])
    statuses.append(call(port, "POST", OPENAI, body,
                         {"Expect": "100-continue"}, conn=conn)[0])
    conn.close()
    check("keep-alive statuses", statuses == [200, 400, 404, 429, 200, 200], statuses)
    counts = stats(port)  # this request opens the second connection
    check("keep-alive one connection", counts["connections"] == 2, counts)


def test_stats_reset(port):
    chat(port, OPENAI, CQA_ROWS[0]["input"])
    reset(port)
    counts = stats(port)
    check("stats reset", counts["requests"] == 0 and counts["ok"] == 0
          and counts["items"] == DEFAULT_ROW_COUNT, counts)


def wait_in_flight(port, n):
    """Poll /stats until n requests are in flight (the poll itself is not)."""
    deadline = time.monotonic() + 10
    while stats(port)["in_flight"] != n and time.monotonic() < deadline:
        time.sleep(0.05)
    return stats(port)["in_flight"] == n


def test_gather(port):
    """gather=N holds requests until N are in flight; too few get 503."""
    question = CQA_ROWS[13]["input"]
    reset(port)
    status, _, body = chat(port, "/faults/gather=2,hang_s=0.3" + OPENAI, question)
    check("gather: too few arrive -> 503", status == 503
          and "fewer than 2 requests" in json.loads(body)["error"]["message"], body)
    reset(port)
    statuses = []
    first = threading.Thread(target=lambda: statuses.append(
        chat(port, "/faults/gather=2" + OPENAI, question)[0]))
    first.start()
    held = wait_in_flight(port, 1)
    check("gather: the first is held", held and not statuses, statuses)
    statuses.append(chat(port, "/faults/gather=2" + OPENAI, question)[0])
    first.join(10)
    check("gather: the second releases both", statuses == [200, 200], statuses)
    statuses = [chat(port, "/faults/gather=2" + OPENAI, question)[0]]
    check("gather: later ones pass at once", statuses == [200], statuses)


def test_many_clients(port):
    """Clients on keep-alive connections are served at once, each on its own."""
    for clients in (16, 32):
        reset(port)
        path = f"/faults/gather={clients}" + OPENAI
        done = [0] * clients
        errors = []

        def worker(i):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                for k in range(3):
                    row = CQA_ROWS[(i * 31 + k) % len(CQA_ROWS)]
                    if chat(port, path, row["input"], conn=conn)[0] == 200:
                        done[i] += 1
            except Exception as e:  # reported below
                errors.append(repr(e))
            finally:
                conn.close()

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        counts = stats(port)  # on one more connection
        check(f"{clients} clients served at once",
              sum(done) == 3 * clients and not errors
              and counts["max_in_flight"] == clients, f"{sum(done)} {errors[:3]} {counts}")
        check(f"{clients} clients' connections reused",
              counts["connections"] == clients + 1, counts)


def test_data_files_and_sigint():
    """--data order (first wins), --host, --verbose, SIGINT during a hang."""
    row = SVAMP_ROWS[0]
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        f.write(json.dumps({"input": row["input"], "teacher_output": "OVERRIDE"}) + "\n")
        f.write(json.dumps({"input": "only a question"}) + "\n\n")
        f.write(json.dumps({"input": "extra", "teacher_output": "EXTRA"}) + "\n")
    try:
        server = Server("--host", "127.0.0.1", "--verbose", "--data", f.name, SVAMP)
        try:
            check_data_files_and_sigint(server, row)
        finally:
            if server.proc.poll() is None:
                server.stop()
    finally:
        os.unlink(f.name)


def check_data_files_and_sigint(server, row):
    check("banner", server.banner == f"replay teacher listening on "
          f"127.0.0.1:{server.port} ({len(SVAMP_ROWS) + 1} items)", server.banner)
    reply = json.loads(chat(server.port, OPENAI, row["input"])[2])
    check("first file wins",
          reply["choices"][0]["message"]["content"] == "OVERRIDE", reply)
    hanging = threading.Thread(target=outcome_of, args=(
        server.port, "/faults/hang=1" + OPENAI, row["input"]))
    hanging.start()
    check("a hang begins", wait_in_flight(server.port, 1))
    # a hang lasts 600 s: stop() kills a server still running after 5 s
    rc, took = server.stop(signal.SIGINT)
    hanging.join(5)
    check("SIGINT stops cleanly during a hang",
          rc == 0 and not hanging.is_alive(), f"rc={rc} {took:.2f}s")
    check("verbose logs requests", "POST /v1/chat/completions" in server.error_output())


TESTS = [test_health, test_openai_exact, test_substring_fallback,
         test_last_user_message, test_unknown, test_bad_requests, test_not_found,
         test_ollama_non_streaming, test_ollama_streaming, test_latency, test_p500,
         test_p429, test_malformed, test_drop, test_hang, test_api_key,
         test_echo, test_pad_bytes, test_error_status, test_bad_spec, test_deterministic_faults, test_fault_buckets,
         test_keep_alive, test_stats_reset, test_gather, test_many_clients]


def run(test, *args):
    try:
        test(*args)
    except Exception:
        check(test.__name__, False, traceback.format_exc())


def main():
    server = Server()
    check("default data", server.banner.endswith(
        f"({DEFAULT_ROW_COUNT} items)"), server.banner)
    try:
        for test in TESTS:
            run(test, server.port)
        hanging = threading.Thread(target=outcome_of, args=(
            server.port, "/faults/hang=1" + OLLAMA, CQA_ROWS[0]["input"]))
        hanging.start()
        check("a hang begins", wait_in_flight(server.port, 1))
    finally:
        # a hang lasts 600 s: stop() kills a server still running after 5 s
        rc, took = server.stop(signal.SIGTERM)
    hanging.join(5)
    check("SIGTERM stops cleanly during a hang",
          rc == 0 and not hanging.is_alive(), f"rc={rc} {took:.2f}s")
    check("quiet without --verbose", server.error_output() == "", server.error_output())
    run(test_data_files_and_sigint)
    print(f"replay_teacher: {results['passed']} passed, {results['failed']} failed")
    sys.exit(1 if results["failed"] else 0)


if __name__ == "__main__":
    main()
