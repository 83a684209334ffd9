"""``rlft serve MODEL``: a local Hugging Face causal LM behind an OpenAI-compatible endpoint
(``POST /v1/chat/completions`` with the ``usage`` field, ``GET /v1/models``), on the standard
library's ThreadingHTTPServer. Loopback (127.0.0.1) by default; ``--api-key-env NAME`` makes
it require ``Authorization: Bearer $NAME``.

Any OpenAI client can then talk to a model rlft trained, and an AI judge (rlft.rewards.judge)
can be a local model: ``[grader.judge] base_url = "http://127.0.0.1:8000/v1"``. Generation goes
through rlft's own sampler (rlft.rollout.sampler), one request at a time; ``n`` > 1 and
streaming are refused with a 400. ``make_server`` takes any ``complete(messages, params)``
function, which is how examples/judge serves a scripted judge through the same protocol.
"""

from __future__ import annotations

import hmac
import json
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import torch

DEFAULT_MAX_TOKENS = 256


@dataclass
class Output:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str = "stop"  # stop | length


class BadRequest(ValueError):
    """A request the server refuses with HTTP 400; the message says what was wrong."""


class Refused(Exception):
    """``complete`` may raise this to answer with another HTTP status (e.g. 429, 503)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


Complete = Callable[[list[dict], dict[str, Any]], Output]


class LocalChat:
    """A causal LM and its tokenizer loaded once; ``complete`` answers one chat at a time."""

    def __init__(self, path: str, device: str = "cpu"):
        from rlft.models import load_model, load_tokenizer, pick_device, pick_dtype
        from rlft.rollout.sampler import HFSampler

        dev = pick_device(device)
        self.tokenizer = load_tokenizer(path)
        self.model = load_model(path, device=dev, dtype=pick_dtype("auto", dev), trainable=False)
        self.sampler = HFSampler(self.model, self.tokenizer)
        self._lock = threading.Lock()

    def complete(self, messages: list[dict], params: dict[str, Any]) -> Output:
        from rlft.models import encode_prompt
        from rlft.rollout.sampler import SamplingParams

        stop = params.get("stop") or []
        stop = (stop,) if isinstance(stop, str) else tuple(stop)
        sampling = SamplingParams(
            max_new_tokens=int(params.get("max_completion_tokens") or params.get("max_tokens") or DEFAULT_MAX_TOKENS),
            temperature=float(params.get("temperature", 1.0)), top_p=float(params.get("top_p", 1.0)), stop=stop,
        )
        if sampling.max_new_tokens < 1 or sampling.temperature < 0 or not 0 < sampling.top_p <= 1:
            raise BadRequest("max_tokens must be >= 1, temperature >= 0 and top_p in (0, 1]")
        generator = torch.Generator().manual_seed(int(params.get("seed", time.time_ns() % 2**31)))
        with self._lock:
            ids = encode_prompt(self.tokenizer, messages)
            [[c]] = self.sampler.generate([ids], 1, sampling, generator)
        text = c.text
        for s in stop:  # OpenAI's stop sequences are not part of the reply
            text = text.split(s, 1)[0]
        return Output(text, len(ids), len(c.tokens), "length" if c.stop_reason == "length" else "stop")


def _messages(body: Any) -> list[dict]:
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise BadRequest("messages must be a non-empty list of {role, content}")
    out = []
    for m in msgs:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise BadRequest(f"each message needs a role and content; got {m!r}")
        content = m.get("content")
        if isinstance(content, list):  # content parts: keep the text ones
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            raise BadRequest(f"message content must be a string or a list of text parts; got {content!r}")
        out.append({"role": m["role"], "content": content})
    if body.get("stream"):
        raise BadRequest("stream = true is not supported by rlft serve")
    if body.get("n", 1) != 1:
        raise BadRequest("n must be 1")
    return out


def make_handler(complete: Complete, model_name: str, api_key: str | None, verbose: bool = False):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, status: int, obj: dict) -> None:
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str, kind: str) -> None:
            self._send(status, {"error": {"message": message, "type": kind, "code": status}})

        def _authorized(self) -> bool:
            if api_key is None:
                return True
            given = self.headers.get("Authorization", "")
            if hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
                return True
            self._error(401, "missing or wrong API key (Authorization: Bearer ...)", "invalid_request_error")
            return False

        def do_GET(self) -> None:
            if not self._authorized():
                return
            if self.path.rstrip("/") in ("/v1/models", "/models"):
                self._send(200, {"object": "list", "data": [{"id": model_name, "object": "model", "owned_by": "rlft"}]})
            else:
                self._error(404, f"no route {self.path}; try /v1/models or POST /v1/chat/completions", "not_found")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if not self._authorized():
                return
            if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                self._error(404, f"no route {self.path}; POST /v1/chat/completions", "not_found")
                return
            try:
                body = json.loads(raw or b"null")
                messages = _messages(body)
                params = {k: v for k, v in body.items() if k not in ("messages", "model")}
                out = complete(messages, params)
            except Refused as e:
                self._error(e.status, str(e), "rate_limit_error" if e.status == 429 else "server_error")
                return
            except (ValueError, TypeError) as e:  # BadRequest, bad JSON, bad parameter types
                self._error(400, f"{type(e).__name__}: {e}", "invalid_request_error")
                return
            except Exception as e:  # noqa: BLE001 - the server stays up; the client sees a 500 and may retry
                self._error(500, f"{type(e).__name__}: {e}", "server_error")
                return
            self._send(200, {
                "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
                "model": model_name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": out.text},
                             "finish_reason": out.finish_reason}],
                "usage": {"prompt_tokens": out.prompt_tokens, "completion_tokens": out.completion_tokens,
                          "total_tokens": out.prompt_tokens + out.completion_tokens},
            })

        def log_message(self, format: str, *args: Any) -> None:
            if verbose:
                super().log_message(format, *args)

    return Handler


def make_server(complete: Complete, model_name: str, host: str = "127.0.0.1", port: int = 8000,
                api_key: str | None = None, verbose: bool = False) -> ThreadingHTTPServer:
    """A server (not yet serving: call ``serve_forever``); port 0 picks a free one (``server.server_port``)."""
    server = ThreadingHTTPServer((host, port), make_handler(complete, model_name, api_key, verbose))
    server.daemon_threads = True
    return server


def serve(complete: Complete, model_name: str, host: str, port: int, api_key: str | None, verbose: bool) -> None:
    """Serve until Ctrl-C, after printing the base URL (tests read it: port 0 picks a free port)."""
    if host not in ("127.0.0.1", "localhost", "::1") and api_key is None:
        print(f"rlft serve: warning: listening on {host} with no API key: anyone who can reach this machine can use "
              f"the model; pass --api-key-env NAME", file=sys.stderr)
    server = make_server(complete, model_name, host, port, api_key, verbose)
    print(f"rlft serve: {model_name} at http://{host}:{server.server_port}/v1 "
          f"(POST /v1/chat/completions, GET /v1/models); Ctrl-C stops", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main(model: str, host: str, port: int, api_key_env: str, name: str, device: str, verbose: bool) -> int:
    import os

    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            print(f"rlft serve: error: --api-key-env {api_key_env}: that environment variable is not set; "
                  f"export the key clients must send in it", file=sys.stderr)
            return 2
    chat = LocalChat(model, device=device)
    serve(chat.complete, name or model, host, port, api_key, verbose)
    return 0
