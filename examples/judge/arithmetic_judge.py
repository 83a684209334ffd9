"""A scripted "judge" behind the same OpenAI-compatible endpoint as `rlft serve`: it reads the
judge prompt rlft sends (the built-in `correctness` rubric: "Question:\\n167+330=" ...
"Response:\\n..."), checks the arithmetic itself and answers like a reasoning judge:

    The sum 167+330 is 497; the response's final answer is 497.
    Score: 1

It stands in for an LLM judge where none is at hand (the tiny model cannot judge anything), so
that a run shows the whole path working end to end: HTTP, the API key, concurrency, retries,
strict parsing, the cache, token and cost accounting. A real judge (any OpenAI-compatible
endpoint, or `rlft serve MODEL` with a capable model) goes through exactly the same path.

To exercise the failure handling it can misbehave on purpose, with a fixed seed:
``--unparsable P`` answers "I am not sure." to a fraction P of requests (errored attempts in
training, masked out), ``--busy P`` answers HTTP 429 to a fraction P (retried with backoff).
Token counts in `usage` are words and punctuation marks, a rough stand-in for a tokenizer.

    export RLFT_JUDGE_KEY=any-local-secret
    python examples/judge/arithmetic_judge.py --port 8011 --api-key-env RLFT_JUDGE_KEY
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sys
import threading

from rlft.serve import Output, Refused, serve

QUESTION = re.compile(r"Question:\s*(\d+)\s*\+\s*(\d+)\s*=")
RESPONSE = re.compile(r"Response:\n(.*?)\n\n", re.DOTALL)


def tokens(text: str) -> int:
    return len(re.findall(r"\w+|[^\w\s]", text))


def judge(prompt: str) -> str:
    q, r = QUESTION.search(prompt), RESPONSE.search(prompt)
    if q is None or r is None:
        return "The prompt has no arithmetic question and response to check.\nScore: 0"
    total = int(q.group(1)) + int(q.group(2))
    m = re.search(r"answer\s+(-?\d+)\s*$", r.group(1).strip()) or re.search(r"(-?\d+)\D*$", r.group(1))
    if m is None:
        return f"The sum {q.group(1)}+{q.group(2)} is {total}; the response gives no final answer.\nScore: 0"
    given = int(m.group(1))
    return (f"The sum {q.group(1)}+{q.group(2)} is {total}; the response's final answer is {given}.\n"
            f"Score: {int(given == total)}")


def make_complete(unparsable: float, busy: float, seed: int):
    rng, lock = random.Random(seed), threading.Lock()

    def complete(messages: list[dict], params: dict) -> Output:
        with lock:
            u = rng.random()
        if u < busy:
            raise Refused(429, "rate limited (scripted): retry later")
        prompt = "\n".join(m["content"] for m in messages)
        text = "I am not sure." if u < busy + unparsable else judge([m for m in messages if m["role"] == "user"][-1]["content"])
        return Output(text, tokens(prompt), tokens(text))

    return complete


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8011)
    p.add_argument("--api-key-env", default="", help="require Authorization: Bearer $NAME")
    p.add_argument("--unparsable", type=float, default=0.0, help="fraction of replies with no score")
    p.add_argument("--busy", type=float, default=0.0, help="fraction of requests answered 429")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    key = os.environ.get(args.api_key_env) if args.api_key_env else None
    if args.api_key_env and not key:
        print(f"error: environment variable {args.api_key_env} is not set", file=sys.stderr)
        return 2
    serve(make_complete(args.unparsable, args.busy, args.seed), "arithmetic-judge", args.host, args.port, key, False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
