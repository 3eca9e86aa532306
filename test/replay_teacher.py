#!/usr/bin/env python3
r"""Replay teacher: a fake LLM server that answers with recorded teacher outputs.

Usage:
    python3 test/replay_teacher.py [--port 8808] [--host 127.0.0.1]
                                   [--data FILE ...] [--verbose]

Loads JSON lines with the fields `input` and `teacher_output` (default: every
*.jsonl in the data/ directory next to this script; when an input appears more
than once, the first file/row wins) and serves them through two APIs:

    POST /v1/chat/completions   OpenAI Chat Completions (non-streaming)
    POST /api/chat              Ollama chat ("stream" defaults to true: NDJSON)
    GET  /health                "ok"
    GET  /stats                 JSON counters (for tests): requests; per outcome
                                ok, unknown, echo, error, 400, 401, 404, 429, 500, 503,
                                malformed, drop, hang; connections accepted,
                                in_flight, max_in_flight; items loaded
    POST /stats/reset           zero the counters, the per-input attempt counts and
                                the arrivals of gather specs

`--port 0` binds a free port; the startup line
`replay teacher listening on HOST:PORT (N items)` shows the one chosen.

The answer is found from the last "user" message. Prompts look like
    <instruction>\n\nQ: <input>\nA: <rationale> So the answer is <label>.\n\n...Q: <input>\nA:
so the text after the last "Q: " (minus a trailing "\nA:", stripped) is looked
up exactly; failing that, the longest known input contained in the message is
used; failing that, the reply is "I have no recorded answer for this question."
The reply is the recorded teacher_output verbatim, including any invented
follow-up "Q:" examples (the client has to cut them off).

Fault injection: put `/faults/<spec>` before the API path, e.g.
    http://127.0.0.1:8808/faults/p500=0.1,p429=0.05,seed=7/v1/chat/completions
where <spec> is a comma-separated list of key=value (values may be %-encoded):

    latency_ms=N    sleep N ms before answering (every request, faulty or not)
    p500=P          reply 500 with a JSON error body
    p429=P          reply 429 with a `Retry-After` header
    retry_after=S   the Retry-After value in whole seconds (default 1)
    malformed=P     reply 200 with a truncated, invalid JSON body
    drop=P          close the connection without any response
    hang=P          send nothing for hang_s seconds, then answer normally
                    (stops early, without answering, when the client goes away
                    or the server shuts down)
    hang_s=S        how long a hang lasts (default 600)
    gather=N        hold each request until N requests with this spec have
                    arrived since the start or the last POST /stats/reset, so
                    that N are in flight at once, then answer them all (later
                    ones pass at once): a test of concurrency that needs no
                    clock.  After hang_s seconds a held request gets 503.
    key=SECRET      require "Authorization: Bearer SECRET"; otherwise 401 with
                    an error message that echoes the presented key (on purpose:
                    the client must scrub secrets from errors it stores)
    seed=N          seed for the fault draw (default 0)

What the reply says (after any fault draw that lets it through):

    echo=1          reply with the question itself, so that a test can make the
                    teacher send any bytes: %XX becomes the byte XX and a
                    backslash is kept, so the question's \uXXXX escapes reach
                    the client as JSON escapes (\u0000, \ud800); a double quote
                    and control characters are escaped
    pad_bytes=N     add N bytes ("x") to the end of the reply text
    error_status=S  answer with HTTP status S (200 included) and the API's error
                    object, whose message is the reply text

p500, p429, malformed, drop and hang are exclusive buckets of one uniform draw
u in [0, 1) (in that order), so their sum must be at most 1. The draw is
deterministic: u = sha256(seed, spec, question, attempt), where attempt counts
the requests seen so far for that (spec, question) pair. A fresh server given
the same requests makes the same decisions; a retry gets a fresh draw.
An unknown key or a bad value gives 400. Unknown paths give 404.

Errors use each API's shape: OpenAI {"error": {"message", "type", ...}},
Ollama {"error": "message"}.
"""

import argparse
import dataclasses
import functools
import glob
import hashlib
import json
import os
import re
import select
import signal
import socket
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, unquote_to_bytes, urlsplit

NO_ANSWER = "I have no recorded answer for this question."
OUTCOMES = ("ok", "unknown", "echo", "error", "400", "401", "404", "429",
            "500", "503", "malformed", "drop", "hang")
FAULT_BUCKETS = (("p500", "500"), ("p429", "429"), ("malformed", "malformed"),
                 ("drop", "drop"), ("hang", "hang"))
WAIT_POLL_S = 0.2


class BadRequest(Exception):
    """The request cannot be served; carries the HTTP status and a message."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------------
# Recorded answers

def load_answers(paths):
    """Read JSON lines into {input: teacher_output}; the first occurrence wins."""
    table = {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    sys.exit(f"{path}:{lineno}: {e}")
                text, output = row.get("input"), row.get("teacher_output")
                if isinstance(text, str) and isinstance(output, str):
                    table.setdefault(text, output)
    return table


def extract_question(message):
    """The text after the last "Q: ", without a trailing "\\nA:", stripped."""
    start = message.rfind("Q: ")
    tail = message[start + 3:] if start >= 0 else message
    tail = tail.rstrip()
    if tail.endswith("\nA:"):
        tail = tail[:-3]
    return tail.strip()


class Answers:
    def __init__(self, table):
        self.table = table
        self.longest_first = sorted(table, key=len, reverse=True)

    def __len__(self):
        return len(self.table)

    def find(self, message, question):
        """The recorded output for this prompt, or None."""
        if question in self.table:
            return self.table[question]
        for known in self.longest_first:
            if known in message:
                return self.table[known]
        return None


# --------------------------------------------------------------------------
# Fault specs

@dataclasses.dataclass(frozen=True)
class FaultSpec:
    text: str = ""
    latency_ms: float = 0.0
    p500: float = 0.0
    p429: float = 0.0
    malformed: float = 0.0
    drop: float = 0.0
    hang: float = 0.0
    retry_after: int = 1
    hang_s: float = 600.0
    key: str = None
    seed: int = 0
    echo: int = 0
    pad_bytes: int = 0
    error_status: int = 0
    gather: int = 0


SPEC_TYPES = {f.name: f.type for f in dataclasses.fields(FaultSpec)
              if f.name != "text"}


@functools.lru_cache(maxsize=256)
def parse_spec(text):
    """Parse "k=v,k=v" into a FaultSpec; raises BadRequest(400) on errors."""
    values = {}
    for item in filter(None, text.split(",")):
        name, _, raw = item.partition("=")
        if name not in SPEC_TYPES:
            raise BadRequest(400, f"unknown fault spec key '{name}'")
        try:
            values[name] = SPEC_TYPES[name](unquote(raw))
        except ValueError:
            raise BadRequest(400, f"bad value for fault spec key '{name}': '{raw}'")
    spec = FaultSpec(text=text, **values)
    check_spec(spec)
    return spec


def check_spec(spec):
    probabilities = [getattr(spec, name) for name, _ in FAULT_BUCKETS]
    if any(not 0.0 <= p <= 1.0 for p in probabilities):
        raise BadRequest(400, "fault probabilities must be between 0 and 1")
    if sum(probabilities) > 1.0 + 1e-9:
        raise BadRequest(400, "fault probabilities must sum to at most 1")
    if min(spec.latency_ms, spec.retry_after, spec.hang_s, spec.pad_bytes, spec.gather) < 0:
        raise BadRequest(400, "latency_ms, retry_after, hang_s, pad_bytes and gather must be >= 0")
    if spec.echo not in (0, 1):
        raise BadRequest(400, "echo must be 0 or 1")
    if spec.error_status and not 200 <= spec.error_status <= 599:
        raise BadRequest(400, "error_status must be an HTTP status from 200 to 599")


def uniform_draw(spec, question, attempt):
    """A deterministic u in [0, 1) from the seed, spec, question and attempt."""
    key = "\x00".join((str(spec.seed), spec.text, question, str(attempt)))
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def choose_fault(spec, u):
    """The outcome name of the bucket u falls in, or None for no fault."""
    edge = 0.0
    for name, outcome in FAULT_BUCKETS:
        edge += getattr(spec, name)
        if u < edge:
            return outcome
    return None


# --------------------------------------------------------------------------
# Counters

class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.arrivals = threading.Condition(self.lock)
        self.next_id = 0
        self.in_flight = 0
        self.reset()

    def reset(self):
        with self.lock:
            self.counts = dict.fromkeys(OUTCOMES, 0)
            self.requests = 0
            self.connections = 0
            self.max_in_flight = self.in_flight
            self.attempts = {}
            self.gathered = {}

    def record(self, outcome):
        with self.lock:
            self.requests += 1
            self.counts[outcome] += 1

    def attempt(self, spec_text, question):
        """The number of earlier requests for (spec, question); counts this one."""
        with self.lock:
            n = self.attempts.get((spec_text, question), 0)
            self.attempts[(spec_text, question)] = n + 1
            return n

    def arrive(self, spec_text):
        """Count a request of a gather spec."""
        with self.lock:
            self.gathered[spec_text] = self.gathered.get(spec_text, 0) + 1
            self.arrivals.notify_all()

    def gathered_enough(self, spec_text, n, timeout):
        """Whether n requests of the spec have arrived, waiting up to timeout."""
        with self.lock:
            return self.arrivals.wait_for(
                lambda: self.gathered.get(spec_text, 0) >= n, timeout)

    def new_id(self):
        with self.lock:
            self.next_id += 1
            return self.next_id

    def connected(self):
        with self.lock:
            self.connections += 1

    def enter(self):
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self):
        with self.lock:
            self.in_flight -= 1

    def snapshot(self, items):
        with self.lock:
            return {"requests": self.requests, **self.counts,
                    "connections": self.connections, "in_flight": self.in_flight,
                    "max_in_flight": self.max_in_flight, "items": items}


# --------------------------------------------------------------------------
# API formats

def word_count(text):
    return len(text.split())


def parse_chat_body(body):
    """Decode a chat request; returns (request, last user content, all contents)."""
    try:
        request = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadRequest(400, f"request body is not valid JSON: {e}")
    messages = request.get("messages") if isinstance(request, dict) else None
    if not isinstance(messages, list) or not messages:
        raise BadRequest(400, "'messages' must be a non-empty array")
    if not all(isinstance(m, dict) and isinstance(m.get("content"), str)
               for m in messages):
        raise BadRequest(400, "each message needs a string 'content'")
    users = [m["content"] for m in messages if m.get("role") == "user"]
    if not users:
        raise BadRequest(400, "no message with role 'user'")
    return request, users[-1], [m["content"] for m in messages]


class OpenAIFormat:
    @staticmethod
    def error(message, kind="invalid_request_error", code=None):
        return {"error": {"message": message, "type": kind, "code": code}}

    @staticmethod
    def check(request):
        if request.get("stream"):
            raise BadRequest(400, "the replay teacher does not stream on this API")

    @staticmethod
    def reply(request, text, prompt_tokens, reply_id, completion_tokens):
        """(content type, body) of a successful answer."""
        return "application/json", json.dumps({
            "id": f"replay-{reply_id}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", "replay"),
            "choices": [{"index": 0,
                         "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens,
                      "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }).encode()


class OllamaFormat:
    @staticmethod
    def error(message, kind=None, code=None):
        return {"error": message}

    @staticmethod
    def check(request):
        pass

    @staticmethod
    def reply(request, text, prompt_tokens, reply_id, completion_tokens):
        model = request.get("model", "replay")
        created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

        def line(content, done):
            obj = {"model": model, "created_at": created,
                   "message": {"role": "assistant", "content": content},
                   "done": done}
            if done:
                obj.update(done_reason="stop", prompt_eval_count=prompt_tokens,
                           eval_count=completion_tokens)
            return json.dumps(obj)

        if request.get("stream") is False:
            return "application/json", line(text, True).encode()
        lines = [line(piece, False) for piece in stream_pieces(text)]
        lines.append(line("", True))
        return "application/x-ndjson", "".join(l + "\n" for l in lines).encode()


def stream_pieces(text, words_per_piece=4):
    """Split text into pieces of a few words that concatenate back to it."""
    words = [w for w in re.findall(r"\S*\s*", text) if w]
    return ["".join(words[i:i + words_per_piece])
            for i in range(0, len(words), words_per_piece)]


# Stands for the reply text in a body built by json.dumps, then replaced by
# the text's JSON string literal, which json.dumps could not produce when it
# holds raw bytes.
TEXT_SLOT = "\ue000replay text\ue000"
TEXT_SLOT_JSON = json.dumps(TEXT_SLOT).encode()


def json_literal(text):
    """The JSON string literal, quotes included, of a str."""
    return json.dumps(text).encode()


def echo_literal(question):
    """The question as a JSON string literal; see echo= in the docstring."""
    out = bytearray(b'"')
    for byte in unquote_to_bytes(question):
        if byte == 0x22:
            out += b'\\"'
        elif byte < 0x20:
            out += b"\\u%04x" % byte
        else:
            out.append(byte)
    return bytes(out + b'"')


def fill_text(body, literal):
    """The body with the reply text's JSON literal where TEXT_SLOT was."""
    return body.replace(TEXT_SLOT_JSON, literal)


ROUTES = {"/v1/chat/completions": OpenAIFormat, "/api/chat": OllamaFormat}


def route(raw_path):
    """Split a request path into (API format or None, fault spec text)."""
    path = urlsplit(raw_path).path
    spec_text = ""
    if path.startswith("/faults/"):
        spec_text, _, rest = path[len("/faults/"):].partition("/")
        path = "/" + rest
    return ROUTES.get(path), spec_text


# --------------------------------------------------------------------------
# HTTP

class ReplayServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(self, address, answers, verbose):
        super().__init__(address, ReplayHandler)
        self.answers = answers
        self.verbose = verbose
        self.stats = Stats()
        self.stopping = threading.Event()

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class ReplayHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ReplayTeacher/1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes

    def setup(self):
        super().setup()
        self.server.stats.connected()

    def log_message(self, format, *args):
        if self.server.verbose:
            super().log_message(format, *args)

    # ---- plumbing

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self.read_chunked()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def read_chunked(self):
        parts = []
        while True:
            size = int(self.rfile.readline().split(b";")[0], 16)
            if size == 0:
                break
            parts.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass  # trailer fields
        return b"".join(parts)

    def send(self, status, body, content_type="application/json", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status, obj, headers=()):
        self.send(status, json.dumps(obj).encode(), headers=headers)

    def drop_connection(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def client_gone(self):
        """True when the peer has closed its side (cheap, non-blocking check)."""
        try:
            return self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def wait(self, seconds):
        """Sleep; False if the server stops or the client leaves meanwhile."""
        deadline = time.monotonic() + seconds
        while not self.server.stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            readable, _, _ = select.select([self.connection], [], [],
                                           min(left, WAIT_POLL_S))
            if readable and self.client_gone():
                return False
            if readable:  # pipelined bytes, not a hang-up: just sleep
                self.server.stopping.wait(min(left, WAIT_POLL_S))
        return False

    def gather(self, fmt, spec):
        """Wait for spec.gather requests of the spec; False if answered otherwise."""
        stats = self.server.stats
        stats.arrive(spec.text)
        deadline = time.monotonic() + spec.hang_s
        while not self.server.stopping.is_set():
            if stats.gathered_enough(spec.text, spec.gather, WAIT_POLL_S):
                return True
            if time.monotonic() >= deadline:
                stats.record("503")
                self.send_json(503, fmt.error(
                    f"gather: fewer than {spec.gather} requests arrived in {spec.hang_s:g} s",
                    "server_error"))
                return False
            readable, _, _ = select.select([self.connection], [], [], 0)
            if readable and self.client_gone():
                break
        self.drop_connection()
        return False

    # ---- endpoints

    def do_GET(self):
        path = urlsplit(self.path).path
        if path == "/health":
            self.send(200, b"ok", "text/plain")
        elif path == "/stats":
            stats = self.server.stats.snapshot(len(self.server.answers))
            self.send_json(200, stats)
        else:
            self.not_found()

    def do_POST(self):
        body = self.read_body()
        if urlsplit(self.path).path == "/stats/reset":
            self.server.stats.reset()
            self.send_json(200, {"reset": True})
            return
        self.server.stats.enter()
        try:
            self.serve_chat(body)
        finally:
            self.server.stats.leave()

    def not_found(self):
        self.server.stats.record("404")
        self.send_json(404, OpenAIFormat.error(f"unknown path: {self.path}"))

    def serve_chat(self, body):
        fmt, spec_text = route(self.path)
        if fmt is None:
            self.not_found()
            return
        try:
            self.answer(fmt, spec_text, body)
        except BadRequest as e:
            self.server.stats.record(str(e.status))
            self.send_json(e.status, fmt.error(str(e)))

    def answer(self, fmt, spec_text, body):
        spec = parse_spec(spec_text)
        if spec.latency_ms and not self.wait(spec.latency_ms / 1000.0):
            self.drop_connection()
            return
        if spec.gather and not self.gather(fmt, spec):
            return
        if spec.key is not None and not self.authorized(fmt, spec.key):
            return
        request, message, contents = parse_chat_body(body)
        fmt.check(request)
        question = extract_question(message)
        attempt = self.server.stats.attempt(spec.text, question)
        fault = choose_fault(spec, uniform_draw(spec, question, attempt))
        if fault in ("500", "429", "drop"):
            self.server.stats.record(fault)
            self.send_fault(fmt, fault, spec)
            return
        if fault == "hang":
            self.server.stats.record("hang")
            if not self.wait(spec.hang_s):
                self.drop_connection()
                return
        status, content_type, reply, outcome = self.compose(
            fmt, spec, request, message, question, contents)
        if fault == "malformed":
            reply = reply[:len(reply) // 2]
        if fault != "hang":  # a hang was counted when it began
            self.server.stats.record(fault or outcome)
        self.send(status, reply, content_type)

    def compose(self, fmt, spec, request, message, question, contents):
        """(status, content type, body, outcome) of the reply the spec asks for."""
        text = self.server.answers.find(message, question)
        outcome = "unknown" if text is None else "ok"
        text = (NO_ANSWER if text is None else text) + "x" * spec.pad_bytes
        words = word_count(text)
        literal = None
        if spec.echo:
            literal = echo_literal(question + "x" * spec.pad_bytes)
            words = word_count(literal.decode("utf-8", "replace"))
            text, outcome = TEXT_SLOT, "echo"
        if spec.error_status:
            status, content_type = spec.error_status, "application/json"
            reply = json.dumps(fmt.error(text)).encode()
            outcome = "error"
        else:
            status = 200
            content_type, reply = fmt.reply(
                request, text, sum(map(word_count, contents)),
                self.server.stats.new_id(), words)
        if literal is not None:
            reply = fill_text(reply, literal)
        return status, content_type, reply, outcome

    def authorized(self, fmt, key):
        presented = self.headers.get("Authorization", "")
        if presented == f"Bearer {key}":
            return True
        if presented.startswith("Bearer "):
            presented = presented[len("Bearer "):]
        self.server.stats.record("401")
        message = (f"Incorrect API key provided: {presented}. You can find "
                   "your API key at https://example.invalid/api-keys.")
        self.send_json(401, fmt.error(message, "invalid_request_error",
                                      "invalid_api_key"))
        return False

    def send_fault(self, fmt, fault, spec):
        if fault == "500":
            self.send_json(500, fmt.error(
                "The server had an error while processing your request.",
                "server_error"))
        elif fault == "429":
            self.send_json(429, fmt.error(
                "Rate limit reached for requests. Please try again later.",
                "requests", "rate_limit_exceeded"),
                headers=[("Retry-After", str(spec.retry_after))])
        else:  # "drop"
            self.drop_connection()


# --------------------------------------------------------------------------
# Main

def default_data_files():
    here = os.path.dirname(os.path.abspath(__file__))
    return sorted(glob.glob(os.path.join(here, "data", "*.jsonl")))


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8808,
                        help="port to listen on (0 = any free port)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--data", nargs="+", metavar="FILE",
                        help="JSON lines files (default: data/*.jsonl next to this script)")
    parser.add_argument("--verbose", action="store_true",
                        help="log every request to stderr")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    answers = Answers(load_answers(args.data or default_data_files()))
    server = ReplayServer((args.host, args.port), answers, args.verbose)

    def stop(signum, frame):
        server.stopping.set()
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host, port = server.server_address[:2]
    print(f"replay teacher listening on {host}:{port} ({len(answers)} items)",
          flush=True)
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
