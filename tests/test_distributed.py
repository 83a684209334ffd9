"""The distributed RL loop (rlft.distributed) on a local Ray cluster started by this module:
the smoke run, a sampler actor killed mid-step, a learner rank killed mid-run and the resume,
and the equivalence with the single-process loop. Pure pieces (sharding, truncated IS,
the all-reduced update) are tested without Ray.

Run: OMP_NUM_THREADS=1 python -m pytest -q tests/test_distributed.py   (needs pip install 'rlft[ray]')
"""

import json
import time

import pytest
import torch
from safetensors.torch import load_file

from rlft import train_rl
from rlft.algos.losses import Norm
from rlft.config import ConfigError, DistributedConfig, load_job
from rlft.data import collate
from rlft.distributed.learners import shard, shard_rows
from rlft.distributed.staleness import truncated_is
from rlft.learner import LossSettings, update
from rlft.tasks import arithmetic
from rlft.types import Trajectory

# --- pure pieces -------------------------------------------------------------------------------


def test_shard_rows_cover_the_batch_once():
    assert shard_rows(5, 2) == [(0, 3), (3, 5)]
    assert shard_rows(1, 3) == [(0, 1), (1, 1), (1, 1)]


def test_truncated_is_worked_example():
    # learner -1.0 vs sampler -1.5 -> e^0.5 = 1.6487, capped at 1.5; equal logprobs -> 1; masked -> 1
    learner = torch.tensor([[-1.0, -2.0, -3.0]])
    sampler = torch.tensor([[-1.5, -2.0, -9.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    w, m = truncated_is(learner, sampler, mask, cap=1.5)
    assert torch.allclose(w, torch.tensor([[1.5, 1.0, 1.0]]))
    assert m["stale/is_capped_fraction"] == pytest.approx(0.5)
    assert m["stale/logp_gap"] == pytest.approx(0.25)


def test_sharded_update_with_summed_gradients_equals_the_single_process_update(tiny):
    """What every learner rank runs: ``update`` on its shard with the step's Norm; the sum of the
    shards' gradients and metric totals (what the all-reduce computes) is the whole batch's,
    including a rank whose only row is all-masked (W = 6 > 5 rows)."""
    model, tok = tiny
    g = torch.Generator().manual_seed(0)
    trajs = []
    for b in range(5):
        n = 3 + b % 3
        toks = torch.randint(3, 100, (4 + n,), generator=g).tolist()
        trajs.append(Trajectory(toks, [0] * 4 + [1] * n, [0.0] * (4 + n)))
    batch = collate(trajs, [1.0, -0.5, 0.25, 2.0, -1.0], tok.pad_token_id)
    loss, optim = LossSettings(max_tokens=8), load_job(None, []).optim
    norm = Norm.of(batch.loss_mask_BT, loss.max_tokens)
    params = [q for q in model.parameters() if q.requires_grad]
    frozen = torch.optim.SGD(params, lr=0.0)  # the step is not under test: the gradient is

    def summed(parts):
        total = None
        for part in parts:  # one "rank" after another; the all-reduce becomes a running sum
            seen = {}
            update(model, frozen, part, loss, optim, norm=norm, all_reduce=lambda t: seen.setdefault("t", t.clone()))
            total = seen["t"] if total is None else total + seen["t"]
        return total

    whole = summed([batch])
    for W in (2, 6):
        assert torch.allclose(summed(shard(batch, W)), whole, atol=1e-6, rtol=1e-5), W


# --- on a local Ray cluster ------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_cluster():
    pytest.importorskip("ray")
    from rlft.distributed.cluster import cluster

    with cluster(DistributedConfig(), num_cpus=3) as ray:  # started by rlft: token auth, no dashboard
        yield ray


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    train, _ = arithmetic.make_splits(2, 24, 4, seed=0, forget=0.6)
    (d / "train.jsonl").write_text("".join(json.dumps(it) + "\n" for it in train))
    # a reward that differs between prompts even when the attempts are alike (greedy decoding of a
    # random model), so reinforce's batch baseline leaves a signal
    (d / "grader.py").write_text(
        "def score(sample, item):\n"
        "    return float(len(set(sample.output_text))) / 4 + float(item['answer'][-1]) / 9\n"
    )
    return d


def job(data_dir, tiny_dir, out, *overrides):
    return load_job(None, [
        f"model.path={tiny_dir}", f"data.train={data_dir / 'train.jsonl'}", "grader.type=python",
        f"grader.function={data_dir / 'grader.py'}:score", "algorithm.name=reinforce",
        "algorithm.prompts_per_step=4", "algorithm.group_size=2", "sampling.max_new_tokens=4",
        "optim.lr=1e-2", "optim.steps=2", "run.progress=false", "run.log_samples=0", f"run.out={out}",
        *overrides,
    ])


def metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def weights(run_dir):
    return load_file(str(run_dir / "final" / "model.safetensors"))


def test_unknown_engine_is_refused():
    with pytest.raises(ConfigError, match=r"distributed.sampler.*valid: hf, vllm"):
        load_job(None, ["distributed.sampler=vlm"])


def test_smoke_one_actor_one_rank(ray_cluster, data_dir, tiny_dir, tmp_path):
    """2 steps, 1 actor, 1 rank, one version of staleness allowed: step 2's work is sampled with
    step 1's weights while step 1 learns, and is corrected with truncated importance weights."""
    summary = train_rl.train(job(data_dir, tiny_dir, tmp_path / "r", "distributed.samplers=1",
                                 "distributed.max_staleness=1"))
    assert summary["placement"] == "distributed"
    rows = metrics(tmp_path / "r")
    assert [r["step"] for r in rows] == [1, 2]
    assert [r["stale/version_lag_max"] for r in rows] == [0, 1]
    assert all(r["stale/is_weight_mean"] > 0 for r in rows if r["kept_sequences"])
    assert rows[0]["logp_gap"] < 1e-4  # step 1: the actor's copy is the learner's weights


def test_lora_weights_travel_as_the_adapter_alone(tiny_dir):
    from rlft.distributed.weights import export_weights, load_weights
    from rlft.models import load_model

    lora = {"rank": 4, "alpha": 8.0, "dropout": 0.0, "target_modules": "all-linear"}
    cpu = torch.device("cpu")
    learner = load_model(tiny_dir, device=cpu, dtype=torch.float32, lora=lora)
    sampler = load_model(tiny_dir, device=cpu, dtype=torch.float32, lora=lora)
    with torch.no_grad():
        for n, p in learner.named_parameters():
            if "lora_" in n:
                p.add_(0.1)
    state = export_weights(learner)
    assert state and all("lora_" in k for k in state)
    load_weights(sampler, state)
    ids = torch.tensor([[5, 6, 7, 8]])
    assert torch.allclose(learner(input_ids=ids).logits, sampler(input_ids=ids).logits, atol=1e-6)


@pytest.mark.slow  # about 60 s: two runs and an actor restart
def test_killed_sampler_is_restarted_and_its_work_counted_once(ray_cluster, data_dir, tiny_dir, tmp_path):
    """The grader kills its actor the first time it runs (mid-step); Ray restarts the actor, the
    pool gives it the current weights and issues the work again. Work is keyed by sample id and its
    RNG derives from the id, so the run ends with exactly the weights of a run without the death."""
    marker = tmp_path / "killed"
    (tmp_path / "killer.py").write_text(
        "import os, pathlib\n"
        f"MARK = pathlib.Path({str(marker)!r})\n"
        "def score(sample, item):\n"
        "    if not MARK.exists():\n"
        "        MARK.touch()\n"
        "        os._exit(1)  # the actor dies mid-step\n"
        "    return float(len(set(sample.output_text))) / 4 + float(item['answer'][-1]) / 9\n"  # = grader.py
    )
    calm = train_rl.train(job(data_dir, tiny_dir, tmp_path / "calm", "distributed.samplers=1"))
    killed = train_rl.train(job(data_dir, tiny_dir, tmp_path / "killed_run", "distributed.samplers=2",
                                f"grader.function={tmp_path / 'killer.py'}:score"))
    assert marker.exists() and calm and killed
    rows = metrics(tmp_path / "killed_run")
    assert sum(r["distributed/actor_deaths"] for r in rows) == 1
    assert sum(r["distributed/reissued"] for r in rows) >= 1
    assert all(r["attempts"] == 8 for r in rows)  # P·G, never more
    a, b = weights(tmp_path / "calm"), weights(tmp_path / "killed_run")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_same_metrics_as_one_process(ray_cluster, data_dir, tiny_dir, tmp_path):
    """2 sampler actors + a 2-rank learner vs the single-process loop, greedy decoding (so the
    attempts do not depend on how prompts are split between actors): per-step metrics within
    1e-4 relative and final weights within 1e-5 (float summation order differs across ranks)."""
    greedy = ["sampling.temperature=0"]  # 2 steps: the second samples with updated weights
    train_rl.train(job(data_dir, tiny_dir, tmp_path / "one", *greedy))
    train_rl.train(job(data_dir, tiny_dir, tmp_path / "dist", *greedy,
                       "distributed.samplers=2", "distributed.learner_ranks=2"))
    one, dist = metrics(tmp_path / "one"), metrics(tmp_path / "dist")
    assert any(r.get("kept_sequences", 0) > 0 for r in one), "the test needs steps that train"
    for r1, r2 in zip(one, dist, strict=True):
        for k in ("reward_mean", "reward_std", "kept_sequences", "loss", "grad_norm", "entropy", "pass_rate"):
            if k in r1:
                assert r2[k] == pytest.approx(r1[k], rel=1e-4, abs=1e-6), (r1["step"], k)
    a, b = weights(tmp_path / "one"), weights(tmp_path / "dist")
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_loopback_rendezvous_pins_learner_ranks_to_this_node(ray_cluster):
    from rlft.distributed.learners import rendezvous

    address, placement = rendezvous(ray_cluster, "127.0.0.1")
    assert address.startswith("tcp://127.0.0.1:") and int(address.rsplit(":", 1)[1]) > 0
    strategy = placement["scheduling_strategy"]
    assert strategy.node_id == ray_cluster.get_runtime_context().get_node_id() and not strategy.soft
    with pytest.raises(ConfigError, match="distributed.listen_host"):
        load_job(None, ["distributed.listen_host= "])


@pytest.mark.slow
def test_dead_learner_rank_stops_the_run_and_it_resumes(ray_cluster, data_dir, tiny_dir, tmp_path):
    """A grader kills learner rank 1 once 2 steps were graded: the next all-reduce fails, the run
    stops (LearnerFailed, within distributed.learner_timeout) naming the checkpoint; running the same
    job again resumes from it and finishes."""
    from rlft.distributed.learners import LearnerFailed

    marker, count = tmp_path / "killed", tmp_path / "calls"
    (tmp_path / "killer.py").write_text(
        "import os, pathlib, signal\n"
        f"MARK, COUNT = pathlib.Path({str(marker)!r}), pathlib.Path({str(count)!r})\n"
        "def score(sample, item):\n"
        "    n = int(COUNT.read_text()) + 1 if COUNT.exists() else 1\n"
        "    COUNT.write_text(str(n))\n"
        "    if n > 16 and not MARK.exists():  # 2 steps of 4 prompts x 2 attempts were graded\n"
        "        MARK.touch()\n"
        "        for p in pathlib.Path('/proc').glob('[0-9]*'):\n"
        "            try:\n"
        "                if (p / 'cmdline').read_bytes().startswith(b'ray::LearnerRank'):\n"
        "                    os.kill(int(p.name), signal.SIGKILL)\n"
        "            except OSError:\n"
        "                pass\n"
        "    return float(len(set(sample.output_text))) / 4 + float(item['answer'][-1]) / 9\n"
    )
    args = ["distributed.samplers=1", "distributed.learner_ranks=2", "distributed.learner_timeout=30",
            "optim.steps=4", "run.checkpoint_every=1", f"grader.function={tmp_path / 'killer.py'}:score"]
    t0 = time.perf_counter()
    with pytest.raises(LearnerFailed, match=r"learner rank failed.*resume"):
        train_rl.train(job(data_dir, tiny_dir, tmp_path / "r", *args))
    assert time.perf_counter() - t0 < 120 and marker.exists()
    summary = train_rl.train(job(data_dir, tiny_dir, tmp_path / "r", *args))
    assert summary["steps"] == 4
    assert [r["step"] for r in metrics(tmp_path / "r")] == [1, 2, 3, 4]
