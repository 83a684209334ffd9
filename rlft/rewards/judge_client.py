"""Chat backends for AI judges (``BACKENDS``): any OpenAI-compatible ``/chat/completions``
endpoint over HTTP (stdlib ``urllib``: no SDK needed), or a local Hugging Face model.

Every backend has ``chat(model, messages, params) -> Reply``. The HTTP backend retries, with
exponential backoff (``backoff * 2**k`` seconds, or the server's Retry-After when longer, at
most 60 s), only what may pass: connection errors, timeouts, HTTP 429 and 5xx. Any other 4xx
means the request itself is wrong (bad model name, bad key): retrying cannot help, so it fails
at once. The API key is read from the environment variable named by ``api_key_env`` at each
request; it is never stored on an object (they pickle to other processes), never put in a
message, and redacted from any error text the server sends back.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from rlft.config import ConfigError, JudgeConfig
from rlft.rewards.judge_prompts import JudgeError

MAX_WAIT_S = 60.0
RETRY_STATUS = (429, 500, 502, 503, 504)  # and any other 5xx


class JudgeUnavailable(JudgeError):
    """The endpoint could not be reached or kept failing (connection, timeout, 429, 5xx) after every retry."""


class JudgeRequestError(JudgeError):
    """The endpoint refused the request (a 4xx other than 429): not retried; the message says why."""


@dataclass
class Reply:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0  # requests that failed and were retried before this reply


def api_key(env_name: str) -> str | None:
    """The key in ``$env_name`` (None when no variable is named); JudgeError when it is unset."""
    if not env_name:
        return None
    key = os.environ.get(env_name)
    if not key:
        raise JudgeError(f"environment variable {env_name} (grader.judge.api_key_env) is not set; export the API key "
                         f"in it, e.g. `export {env_name}=...`, before starting rlft")
    return key


class _Retry(Exception):
    def __init__(self, reason: str, wait_s: float = 0.0):
        super().__init__(reason)
        self.wait_s = wait_s


@dataclass(frozen=True)
class OpenAIChat:
    """POST {base_url}/chat/completions; reads ``choices[0].message.content`` and ``usage``."""

    base_url: str
    api_key_env: str
    timeout: float
    max_retries: int
    backoff: float

    def chat(self, model: str, messages: list[dict], params: dict[str, Any]) -> Reply:
        body = json.dumps({"model": model, "messages": messages, **params}).encode()
        key = api_key(self.api_key_env)
        headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
        url = self.base_url.rstrip("/") + "/chat/completions"
        for attempt in range(self.max_retries + 1):
            try:
                raw = self._post(url, body, headers, key)
            except _Retry as e:
                if attempt == self.max_retries:
                    raise JudgeUnavailable(f"judge endpoint {url}: {e} (after {attempt + 1} tries); check that the "
                                           f"server runs, or raise grader.judge.max_retries / timeout") from None
                time.sleep(min(MAX_WAIT_S, max(self.backoff * 2**attempt, e.wait_s)))
                continue
            return _reply(raw, url, attempt)
        raise AssertionError("unreachable")

    def _post(self, url: str, body: bytes, headers: dict, key: str | None) -> bytes:
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as e:
            text = _redact(e.read()[:300].decode("utf-8", "replace"), key)
            if e.code in RETRY_STATUS or e.code >= 500:
                raise _Retry(f"HTTP {e.code} {text!r}", _retry_after(e.headers.get("Retry-After"))) from None
            if e.code in (401, 403):
                raise JudgeRequestError(f"judge endpoint {url} refused the API key (HTTP {e.code}); check "
                                        f"${self.api_key_env or '(grader.judge.api_key_env is empty)'}") from None
            raise JudgeRequestError(f"judge endpoint {url}: HTTP {e.code} {text!r} (not retried: the request "
                                    f"itself was refused; check grader.model and the messages)") from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
            reason = getattr(e, "reason", e)  # URLError wraps the socket error
            kind = "timed out" if isinstance(reason, TimeoutError) else "connection failed"
            raise _Retry(f"{kind} ({type(reason).__name__}: {reason}; timeout {self.timeout:g} s)") from None


def _retry_after(value: str | None) -> float:
    try:
        return float(value) if value else 0.0
    except ValueError:
        return 0.0  # an HTTP date: fall back to our own backoff


def _redact(text: str, key: str | None) -> str:
    return text.replace(key, "[REDACTED]") if key else text


def _reply(raw: bytes, url: str, retries: int) -> Reply:
    try:
        obj = json.loads(raw)
        text = obj["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise JudgeError(f"judge endpoint {url} sent no chat completion (expected choices[0].message.content); "
                         f"got {raw[:200]!r}") from None
    usage = obj.get("usage") or {}
    return Reply(text or "", int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0), retries)


@dataclass
class LocalHFChat:
    """A local Hugging Face causal LM, loaded at the first call (not at job load) and decoded
    greedily unless ``params`` asks otherwise; one generation at a time."""

    path: str
    device: str = "cpu"
    _chat: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def chat(self, model: str, messages: list[dict], params: dict[str, Any]) -> Reply:
        with self._lock:
            if self._chat is None:
                from rlft.serve import LocalChat

                self._chat = LocalChat(self.path, device=self.device)
            out = self._chat.complete(messages, {"temperature": 0.0, **params})
        return Reply(out.text, out.prompt_tokens, out.completion_tokens)

    def __getstate__(self) -> dict:  # another process loads its own copy
        return {"path": self.path, "device": self.device}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)


def openai(cfg: JudgeConfig, model: str, base_dir: str, where: str) -> OpenAIChat:
    if not cfg.base_url:
        raise ConfigError(f"{where}.judge.base_url is empty; set it to an OpenAI-compatible endpoint, e.g. "
                          f"\"https://api.openai.com/v1\", or \"http://127.0.0.1:8000/v1\" for `rlft serve MODEL`")
    if not cfg.base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}.judge.base_url = {cfg.base_url!r}: expected an http:// or https:// URL")
    if not model:
        raise ConfigError(f"{where}.model is empty; name the judge model the endpoint serves, e.g. model = \"gpt-4o-mini\"")
    if cfg.api_key_env and not os.environ.get(cfg.api_key_env):
        raise ConfigError(f"{where}.judge.api_key_env = {cfg.api_key_env!r}: that environment variable is not set; "
                          f"export the key in it (the job holds only the variable's name), or set api_key_env = \"\" "
                          f"for an endpoint that needs no key")
    return OpenAIChat(cfg.base_url, cfg.api_key_env, cfg.timeout, cfg.max_retries, cfg.backoff)


def hf(cfg: JudgeConfig, model: str, base_dir: str, where: str) -> LocalHFChat:
    if not model:
        raise ConfigError(f"{where}.model is empty; with judge.backend = \"hf\" it is a local model folder or hub id")
    local = os.path.join(base_dir, model)
    return LocalHFChat(local if os.path.exists(local) else model, cfg.device)


# judge.backend -> factory (cfg, model, base_dir, where) -> backend with .chat(model, messages, params)
BACKENDS = {"openai": openai, "hf": hf}
