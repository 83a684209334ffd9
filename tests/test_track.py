"""Tracker writes metrics.jsonl, samples.jsonl and TensorBoard events.

Run: python -m pytest -q tests/test_track.py
"""

import json

from rlft.track import Tracker


def test_tracker_round_trip(tmp_path):
    with Tracker(tmp_path) as tracker:
        tracker.log(0, {"loss": 1.5, "reward_mean": 0.25})
        tracker.log(1, {"loss": 1.0})
        tracker.log_samples(1, [{"prompt": "2+2", "completion": "4", "reward": 1.0}, {"prompt": "x"}])
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert metrics == [{"step": 0, "loss": 1.5, "reward_mean": 0.25}, {"step": 1, "loss": 1.0}]
    samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert samples == [
        {"step": 1, "prompt": "2+2", "completion": "4", "reward": 1.0},
        {"step": 1, "prompt": "x"},
    ]
    assert any((tmp_path / "tb").iterdir()), "no TensorBoard event file written"


def test_tracker_without_tensorboard_appends(tmp_path):
    with Tracker(tmp_path, tensorboard=False) as tracker:
        tracker.log(0, {"a": 1.0})
    with Tracker(tmp_path, tensorboard=False) as tracker:  # a resumed run appends
        tracker.log(1, {"a": 2.0})
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [0, 1]
    assert not (tmp_path / "tb").exists()
