"""AI judges (rlft.rewards.judge) against real HTTP servers on 127.0.0.1: a fake
OpenAI-compatible server written here, scripted per request (scores, unparsable text, 429 / 500
then success, 400, slow replies), and `rlft serve` serving the tiny model (one smoke test).

Run: OMP_NUM_THREADS=1 python -m pytest -q tests/test_judge.py
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rlft.config import ConfigError, GraderConfig, JudgeConfig, load_job
from rlft.rewards.graders import make_grader
from rlft.rewards.judge import JudgeParseError, JudgeRequestError, JudgeUnavailable
from rlft.rewards.judge_prompts import parse_label, parse_ranking, parse_score
from rlft.rollout.runner import grade_groups
from rlft.types import Sample

ITEM = {"prompt": "2+3=", "answer": "5"}


class Fake:
    """A scripted OpenAI-compatible server: ``script(body, n)`` -> (status, reply text, delay s)
    for the n-th request (0-based); it records every request and the most ever in flight."""

    def __init__(self):
        self.requests: list[dict] = []
        self.times: list[float] = []
        self.auth: list[str | None] = []
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        self.script = lambda body, n: (200, "Score: 1", 0.0)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    n = len(fake.requests)
                    fake.requests.append(body)
                    fake.times.append(time.perf_counter())
                    fake.auth.append(self.headers.get("Authorization"))
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    status, text, delay = fake.script(body, n)
                    time.sleep(delay)
                finally:
                    with fake.lock:
                        fake.in_flight -= 1
                obj = ({"choices": [{"message": {"role": "assistant", "content": text}}],
                        "usage": {"prompt_tokens": 100, "completion_tokens": 10}} if status == 200
                       else {"error": {"message": text}})
                data = json.dumps(obj).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def user_text(self, n: int) -> str:
        return [m for m in self.requests[n]["messages"] if m["role"] == "user"][-1]["content"]


@pytest.fixture()
def fake():
    f = Fake()
    yield f
    f.server.shutdown()
    f.server.server_close()


def grader(fake, type="score_model", **kw):
    judge = {"base_url": fake.url, "backoff": 0.01, "max_retries": 3, "timeout": 5.0, **kw.pop("judge", {})}
    defaults = {"model": "judge-1", "messages": [
        {"role": "system", "content": "You grade sums."},
        {"role": "user", "content": "Problem: {{item.prompt}}\nAnswer: {{sample.output_text}}"},
    ]}
    if type == "rank_model":
        defaults["messages"] = [{"role": "user", "content": "Problem: {{item.prompt}}"}]
    return make_grader(GraderConfig(type=type, **{**defaults, **kw}, judge=JudgeConfig(**judge)))


# --- parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("reply,score", [
    ("0.8", 0.8), ('{"score": 1, "why": "right"}', 1.0), ("```json\n{\"result\": 0.25}\n```", 0.25),
    ("The sum is right.\nScore: 0.5", 0.5), ("**Score:** 1", 1.0), ("Final score = 0", 0.0),
])
def test_parse_score_accepts(reply, score):
    assert parse_score(reply, 0, 1) == score


@pytest.mark.parametrize("reply", ["good", "Score: 2", "0.5 or 0.7", "Score: 1 because", "", '{"score": "high"}', "nan"])
def test_parse_score_refuses(reply):
    with pytest.raises(JudgeParseError):
        parse_score(reply, 0, 1)


def test_parse_label_and_ranking():
    labels = ("correct", "incorrect")
    assert parse_label("Incorrect.", labels) == "incorrect"
    assert parse_label("It adds up.\nLabel: correct", labels) == "correct"
    assert parse_label('{"label": "correct"}', labels) == "correct"
    with pytest.raises(JudgeParseError):
        parse_label("maybe", labels)
    assert parse_ranking("Ranking: 2 > 1 > 3", 3) == [2, 1, 3]
    assert parse_ranking("[3, 1, 2]", 3) == [3, 1, 2]
    for bad in ("Ranking: 2 > 2 > 1", "Ranking: 1 > 2", "the second"):
        with pytest.raises(JudgeParseError):
            parse_ranking(bad, 3)


# --- score_model, label_model over HTTP --------------------------------------------------------


def test_score_request_tokens_and_cost(fake):
    fake.script = lambda body, n: (200, "Looks right.\nScore: 0.75", 0.0)
    g = grader(fake, judge={"price_input": 1.0, "price_output": 2.0})
    assert g(Sample("5"), ITEM) == 0.75
    body = fake.requests[0]
    assert body["model"] == "judge-1" and body["temperature"] == 0.0
    assert body["messages"][0] == {"role": "system", "content": "You grade sums."}
    assert fake.user_text(0).startswith("Problem: 2+3=\nAnswer: 5\n\n") and "Score: N" in fake.user_text(0)
    m = g.metrics()
    assert m["judge/calls"] == 1 and m["judge/tokens"] == 110
    assert m["judge/cost_usd"] == pytest.approx((100 * 1.0 + 10 * 2.0) / 1e6)


def test_cache_and_identical_attempts_in_flight(fake):
    fake.script = lambda body, n: (200, "Score: 1", 0.05)
    g = grader(fake)
    assert g(Sample("5"), ITEM) == 1.0 and g(Sample("5"), ITEM) == 1.0
    assert len(fake.requests) == 1 and g.metrics()["judge/cache_hits"] == 1
    # a group of 6 attempts, 2 distinct texts (one already cached): one new request
    out = g.grade_group([Sample(t) for t in ["5", "6", "6", "6", "5", "6"]], [ITEM] * 6)
    assert out == [1.0] * 6 and len(fake.requests) == 2
    assert g.metrics()["judge/cache_hits"] == 1 + 5
    off = grader(fake, judge={"cache": False})
    off(Sample("5"), ITEM), off(Sample("5"), ITEM)
    assert len(fake.requests) == 4


def test_disk_cache_in_the_run_folder(fake, tmp_path):
    g = grader(fake, judge={"disk_cache": True})
    g.use_run_dir(tmp_path)
    assert g(Sample("5"), ITEM) == 1.0
    again = grader(fake, judge={"disk_cache": True})
    again.use_run_dir(tmp_path)  # a resumed run: nothing is asked twice
    assert again(Sample("5"), ITEM) == 1.0 and len(fake.requests) == 1
    assert "judge-1" not in (tmp_path / "judge_cache.jsonl").read_text()  # hashes and replies, not prompts


def test_unparsable_reply_errors_the_attempt_and_is_not_cached(fake):
    fake.script = lambda body, n: (200, "This answer seems quite good to me!", 0.0)
    g = grader(fake)
    [[(reward, error)]] = grade_groups(g, [ITEM], [["5"]])
    assert reward == 0.0 and error.startswith("JudgeParseError: judge reply holds no score")
    with pytest.raises(JudgeParseError):
        g(Sample("5"), ITEM)
    assert len(fake.requests) == 2 and g.metrics()["judge/parse_errors"] == 2


@pytest.mark.parametrize("status", [429, 500, 503])
def test_retries_then_success(fake, status):
    fake.script = lambda body, n: (status, "busy", 0.0) if n < 2 else (200, "Score: 1", 0.0)
    g = grader(fake, judge={"backoff": 0.05})
    assert g(Sample("5"), ITEM) == 1.0
    assert len(fake.requests) == 3 and g.metrics()["judge/retries"] == 2
    gaps = [b - a for a, b in zip(fake.times, fake.times[1:])]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.10  # exponential backoff: 0.05 s, then 0.1 s


def test_client_error_is_not_retried(fake):
    fake.script = lambda body, n: (400, "unknown model judge-1", 0.0)
    g = grader(fake)
    with pytest.raises(JudgeRequestError, match="HTTP 400 .*unknown model"):
        g(Sample("5"), ITEM)
    assert len(fake.requests) == 1 and g.metrics()["judge/errors"] == 1


def test_gives_up_after_retries(fake):
    fake.script = lambda body, n: (500, "down", 0.0)
    g = grader(fake, judge={"max_retries": 2})
    [[(_, error)]] = grade_groups(g, [ITEM], [["5"]])
    assert error.startswith("JudgeUnavailable:") and "after 3 tries" in error
    assert len(fake.requests) == 3


def test_slow_reply_times_out_and_is_retried(fake):
    fake.script = lambda body, n: (200, "Score: 1", 1.0 if n == 0 else 0.0)
    g = grader(fake, judge={"timeout": 0.2})
    assert g(Sample("5"), ITEM) == 1.0
    assert len(fake.requests) == 2 and g.metrics()["judge/retries"] == 1
    fake.script = lambda body, n: (200, "Score: 1", 1.0)
    g = grader(fake, judge={"timeout": 0.2, "max_retries": 1})
    with pytest.raises(JudgeUnavailable, match="timed out"):
        g(Sample("6"), ITEM)


def test_concurrency_is_bounded(fake):
    fake.script = lambda body, n: (200, "Score: 1", 0.1)
    g = grader(fake, judge={"max_concurrency": 3})
    texts_P_G = [[f"{p}{i}" for i in range(4)] for p in range(4)]  # 16 distinct attempts, 4 groups
    t0 = time.perf_counter()
    graded = grade_groups(g, [ITEM] * 4, texts_P_G)
    assert all(r == (1.0, None) for row in graded for r in row)
    assert fake.max_in_flight == 3  # the bound is reached, never passed
    assert time.perf_counter() - t0 >= 0.1 * 16 / 3 * 0.9


def test_label_model(fake):
    replies = {"5": "Label: correct", "6": "incorrect", "7": "no idea"}
    fake.script = lambda body, n: (200, replies[re.search(r"Answer: (\d)", fake.user_text(n)).group(1)], 0.0)
    g = grader(fake, "label_model", labels=["correct", "incorrect"], passing_labels=["correct"])
    out = g.grade_group([Sample("5"), Sample("6"), Sample("7")], [ITEM] * 3)
    assert out[:2] == [1.0, 0.0] and isinstance(out[2], JudgeParseError)
    assert "one of: correct, incorrect" in fake.user_text(0)


def test_rank_model_one_call_per_group(fake):
    def longest_first(body, n):  # a scripted judge: the longer the answer, the better
        found = re.findall(r"\[(\d+)\]\n(.*?)\n", fake.user_text(n))
        order = sorted(found, key=lambda c: -len(c[1]))
        return 200, "Ranking: " + " > ".join(c for c, _ in order), 0.0

    fake.script = longest_first
    g = grader(fake, "rank_model")
    out = g.grade_group([Sample(t) for t in ["a", "ccc", "bb", "ccc"]], [ITEM] * 4)
    assert out == [0.0, 1.0, 0.5, 1.0] and len(fake.requests) == 1
    assert g.grade_group([Sample("x")] * 3, [ITEM] * 3) == [0.5] * 3 and len(fake.requests) == 1
    [row] = grade_groups(g, [ITEM], [["a", "bb"]])
    assert row == [(0.0, None), (1.0, None)]
    with pytest.raises(ConfigError, match="only .*item"):
        grader(fake, "rank_model", messages=[{"role": "user", "content": "{{sample.output_text}}"}])


def test_multi_with_a_judge_grades_groups(fake):
    fake.script = lambda body, n: (200, "Score: 0.5", 0.0)
    g = make_grader(GraderConfig(type="multi", calculate_output="exact + judge", graders={
        "exact": GraderConfig(type="exact"),
        "judge": GraderConfig(type="score_model", model="j", rubric="correctness", judge=JudgeConfig(base_url=fake.url)),
    }))
    assert g.grade_group([Sample("5"), Sample("4")], [ITEM] * 2) == [1.5, 0.5]
    assert g.metrics()["judge/calls"] == 2
    assert "Reference answer:\n5" in fake.user_text(0)  # the built-in rubric, with the item's answer


def test_openai_grader_file_with_the_job_judge(fake, tmp_path):
    (tmp_path / "grader.json").write_text(json.dumps({
        "type": "score_model", "name": "judge", "model": "judge-1", "range": [0, 10],
        "input": [{"role": "user", "content": "Rate {{sample.output_text}} for {{item.prompt}}"}],
        "sampling_params": {"temperature": 0.2, "max_completions_tokens": 64},
    }))
    (tmp_path / "job.toml").write_text(f'[grader]\nfile = "grader.json"\n[grader.judge]\nbase_url = "{fake.url}"\n')
    fake.script = lambda body, n: (200, "Score: 7", 0.0)
    g = make_grader(load_job(tmp_path / "job.toml").grader, tmp_path)
    assert g(Sample("5"), ITEM) == 7.0
    assert fake.requests[0]["max_completion_tokens"] == 64 and fake.requests[0]["temperature"] == 0.2


def test_config_errors_name_the_fix(fake, monkeypatch):
    monkeypatch.delenv("RLFT_TEST_NO_SUCH_KEY", raising=False)
    with pytest.raises(ConfigError, match="RLFT_TEST_NO_SUCH_KEY.*not set"):
        grader(fake, judge={"api_key_env": "RLFT_TEST_NO_SUCH_KEY"})
    with pytest.raises(ConfigError, match="base_url is empty"):
        make_grader(GraderConfig(type="score_model", model="m", rubric="correctness"))
    with pytest.raises(ConfigError, match="passing_labels"):
        grader(fake, "label_model", labels=["a", "b"], passing_labels=["c"])
    with pytest.raises(ConfigError, match="judge.backend: unknown judge backend; valid: openai, hf"):
        load_job(None, ["grader.type=score_model", "grader.model=m", "grader.judge.backend=vlm"])


# --- a training run: the key from the environment, never in the run folder --------------------


def test_training_with_a_judge_keeps_the_key_out_of_the_run(fake, tiny_dir, tmp_path, monkeypatch):
    from rlft import train_rl
    from rlft.tasks import arithmetic

    secret = "sk-test-" + "9f3c1a7e" * 4
    monkeypatch.setenv("RLFT_TEST_JUDGE_KEY", secret)
    train, _ = arithmetic.make_splits(2, 8, 2, seed=0, forget=0.6)
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(it) + "\n" for it in train))
    fake.script = lambda body, n: (200, f"Score: {n % 3 / 2}" if n % 7 else "unsure", 0.0)  # some unparsable
    out = tmp_path / "run"
    job = load_job(None, [
        f"model.path={tiny_dir}", f"data.train={tmp_path / 'train.jsonl'}", "algorithm.prompts_per_step=2",
        "algorithm.group_size=4", "sampling.max_new_tokens=4", "optim.steps=2", "run.progress=false",
        f"run.out={out}", "run.max_errored_fraction=1", "grader.type=score_model", "grader.model=judge-1",
        "grader.rubric=correctness", f"grader.judge.base_url={fake.url}", "grader.judge.api_key_env=RLFT_TEST_JUDGE_KEY",
        "grader.judge.disk_cache=true", "grader.judge.price_input=0.5",
    ])
    train_rl.train(job)
    assert fake.auth and all(a == f"Bearer {secret}" for a in fake.auth)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if "judge/calls" in line]
    assert len(rows) == 2 and rows[-1]["judge/calls"] == len(fake.requests)
    assert rows[-1]["judge/tokens"] == 110 * len(fake.requests)
    assert rows[-1]["judge/cost_usd"] == pytest.approx(100 * 0.5 * len(fake.requests) / 1e6)
    for path in out.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert "RLFT_TEST_JUDGE_KEY" in (out / "config.toml").read_text()  # the name, not the key


# --- local models ------------------------------------------------------------------------------


def test_local_hf_backend(tiny_dir):
    import pickle

    g = make_grader(GraderConfig(type="score_model", model=str(tiny_dir), rubric="helpfulness",
                                 sampling_params={"max_completion_tokens": 5}, judge=JudgeConfig(backend="hf")))
    [result] = g.grade_group([Sample("5")], [ITEM])  # loaded at the first call, not at job load
    assert isinstance(result, JudgeParseError) or 0 <= result <= 1  # a random model is no judge
    m = g.metrics()
    assert m["judge/calls"] == 1 and 5 < m["judge/tokens"] and m["judge/errors"] == 0
    assert pickle.loads(pickle.dumps(g)).metrics()["judge/calls"] == 0  # pickles without the model or pool


# --- rlft serve -------------------------------------------------------------------------------


def test_rlft_serve_smoke(tiny_dir, monkeypatch):
    env = {**os.environ, "RLFT_TEST_SERVE_KEY": "local-secret", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rlft.cli", "serve", str(tiny_dir), "--port", "0", "--name", "tiny",
         "--api-key-env", "RLFT_TEST_SERVE_KEY", "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        line = proc.stdout.readline()
        m = re.search(r"at (http://127\.0\.0\.1:\d+/v1)", line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
        url = m.group(1)
        with pytest.raises(urllib.error.HTTPError) as e:  # the bearer token is checked
            urllib.request.urlopen(url + "/models", timeout=30)
        assert e.value.code == 401
        req = urllib.request.Request(url + "/models", headers={"Authorization": "Bearer local-secret"})
        assert json.load(urllib.request.urlopen(req, timeout=30))["data"][0]["id"] == "tiny"
        monkeypatch.setenv("RLFT_TEST_SERVE_KEY", "local-secret")
        g = make_grader(GraderConfig(type="score_model", model="tiny", rubric="correctness",
                                     sampling_params={"max_completion_tokens": 6},
                                     judge=JudgeConfig(base_url=url, api_key_env="RLFT_TEST_SERVE_KEY", max_retries=0)))
        [result] = g.grade_group([Sample("5")], [ITEM])
        # an untrained model is no judge: its reply is unreadable (errored) or, by chance, a score
        assert isinstance(result, JudgeParseError) or 0 <= result <= 1
        m = g.metrics()
        assert m["judge/calls"] == 1 and m["judge/errors"] == 0 and m["judge/tokens"] > 6
    finally:
        proc.terminate()
        proc.wait(timeout=30)
