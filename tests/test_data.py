"""Dataset loading: each format round-trips; each problem is reported as path:line.

Run: python -m pytest tests/test_data.py -q   (fast, no network)
"""

from __future__ import annotations

import json

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rlft.data import DataError, load_items

ROWS = [
    {"prompt": "1+1=", "answer": "2"},
    {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2="}], "answer": "4"},
]


def write_jsonl(path, lines):
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def errors_of(**kwargs) -> list[str]:
    with pytest.raises(DataError) as e:
        load_items(**kwargs)
    return e.value.errors


def strip_meta(items):
    return [{k: v for k, v in it.items() if not k.startswith("_")} for it in items]


def test_jsonl_round_trip_with_chat_prompts(tmp_path):
    p = write_jsonl(tmp_path / "train.jsonl", [ROWS[0], "", ROWS[1]])  # blank lines are skipped
    items = load_items("train.jsonl", required=["answer"], prompt_field="prompt", base_dir=tmp_path)
    assert strip_meta(items) == ROWS
    assert [it["_line"] for it in items] == [1, 3] and items[0]["_source"] == str(p)
    assert len(load_items(str(p), limit=1)) == 1


def test_json_one_object_per_line(tmp_path):
    write_jsonl(tmp_path / "d.json", ROWS)
    assert strip_meta(load_items(str(tmp_path / "d.json"), prompt_field="prompt")) == ROWS


def test_csv_round_trip_lines_count_header(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text('prompt,answer\nhello,1\n"multi\nline",2\nbye,3\n')
    items = load_items(str(p), required=["answer"], prompt_field="prompt")
    assert [it["prompt"] for it in items] == ["hello", "multi\nline", "bye"]
    assert [it["_line"] for it in items] == [2, 3, 5]  # header is line 1; a quoted field spans 3-4


def test_parquet_round_trip(tmp_path):
    p = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist([ROWS[1], {**ROWS[1], "answer": "5"}]), p)
    items = load_items(str(p), prompt_field="prompt", required=["answer"])
    assert strip_meta(items)[0] == ROWS[1] and [it["_line"] for it in items] == [0, 1]


def test_save_to_disk_round_trip(tmp_path):
    datasets.Dataset.from_list(ROWS[:1] * 3).save_to_disk(str(tmp_path / "ds"))
    items = load_items("ds", base_dir=tmp_path, prompt_field="prompt")
    assert strip_meta(items) == ROWS[:1] * 3 and items[2]["_line"] == 2
    one, two = datasets.Dataset.from_list(ROWS[:1]), datasets.Dataset.from_list(ROWS[:1] * 2)
    dd = datasets.DatasetDict({"train": one, "test": two})
    dd.save_to_disk(str(tmp_path / "dd"))
    assert len(load_items(str(tmp_path / "dd"))) == 1  # "train" by default
    assert len(load_items(str(tmp_path / "dd") + ":test")) == 2
    with pytest.raises(DataError, match=r"no split 'dev'; splits: train, test"):
        load_items(str(tmp_path / "dd") + ":dev")


def test_every_problem_named_with_file_and_line(tmp_path):
    p = write_jsonl(
        tmp_path / "bad.jsonl",
        [
            ROWS[0],
            '{"prompt": "x", ',  # 2: bad JSON
            "[1, 2]",  # 3: not an object
            {"question": "x", "answer": "1"},  # 4: missing prompt
            {"prompt": "   ", "answer": "1"},  # 5: empty prompt
            {"prompt": 5, "answer": "1"},  # 6: wrong type
            {"prompt": [{"role": "bot", "content": "x"}], "answer": "1"},  # 7: bad role
            {"prompt": [{"role": "user", "content": 3}], "answer": "1"},  # 8: bad content
            {"prompt": [], "answer": "1"},  # 9: empty message list
            {"prompt": "ok"},  # 10: missing answer
            {"prompt": "ok", "answer": None},  # 11: null answer
        ],
    )
    errs = errors_of(source=str(p), required=["answer"], prompt_field="prompt")
    assert errs == [
        f"{p}:2: bad JSON: Expecting property name enclosed in double quotes at column 16",
        f"{p}:3: expected a JSON object {{...}}, got list",
        f"{p}:4: missing required field 'prompt'; fields present: 'question', 'answer'",
        f"{p}:5: 'prompt' is empty",
        f"{p}:6: 'prompt' must be a string or a list of chat messages, got int 5",
        f"{p}:7: 'prompt' message 0: role 'bot' is not one of system, user, assistant, tool",
        f"{p}:8: 'prompt' message 0: content must be a string, got int 3",
        f"{p}:9: 'prompt' is an empty list of messages",
        f"{p}:10: missing required field 'answer'; fields present: 'prompt'",
        f"{p}:11: null required field 'answer'; fields present: 'prompt', 'answer'",
    ]
    with pytest.raises(DataError, match=r"10 bad row\(s\) in .*bad.jsonl:\n.*bad.jsonl:2: bad JSON"):
        load_items(str(p), required=["answer"], prompt_field="prompt")


def test_max_errors_respected(tmp_path):
    p = write_jsonl(tmp_path / "bad.jsonl", ["nope"] * 10)
    with pytest.raises(DataError) as e:
        load_items(str(p), max_errors=3)
    assert len(e.value.errors) == 3 and "stopped after 3 errors; data.max_errors" in str(e.value)


def test_csv_ragged_rows(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("prompt,answer\nhello\na,b,c\n")
    assert errors_of(source=str(p)) == [
        f"{p}:2: 1 values but the header has 2 columns",
        f"{p}:3: 3 values but the header has 2 columns",
    ]


def test_parquet_errors_name_the_row(tmp_path):
    p = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist([{"prompt": "a"}, {"prompt": ""}]), p)
    assert errors_of(source=str(p), prompt_field="prompt") == [f"{p}:row 1: 'prompt' is empty"]


def test_empty_file_and_missing_sources(tmp_path, monkeypatch):
    (tmp_path / "e.jsonl").write_text("\n\n")
    with pytest.raises(DataError, match=r"e.jsonl: no rows"):
        load_items(str(tmp_path / "e.jsonl"))
    with pytest.raises(DataError, match=r"missing.jsonl: file not found \(looked at .*missing.jsonl\)"):
        load_items("missing.jsonl", base_dir=tmp_path)
    with pytest.raises(DataError, match=r"unsupported file type '.txt'"):
        (tmp_path / "a.txt").write_text("x")
        load_items(str(tmp_path / "a.txt"))
    with pytest.raises(DataError, match="no data source given"):
        load_items("")

    def offline(name, split):
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    expected = r"no-such-thing: no such file or folder .* no hub dataset could be loaded \(ConnectionError: offline\)"
    with pytest.raises(DataError, match=expected):
        load_items("no-such-thing", base_dir=tmp_path)


def test_hub_name_and_split(monkeypatch):
    seen = []

    def fake(name, split):
        seen.append((name, split))
        return datasets.Dataset.from_list(ROWS[:1])

    monkeypatch.setattr(datasets, "load_dataset", fake)
    items = load_items("someone/math:test", prompt_field="prompt")
    assert seen == [("someone/math", "test")] and items[0]["_source"] == "someone/math:test"
    load_items("someone/math")
    assert seen[-1] == ("someone/math", "train")


def test_skip_invalid_drops_bad_rows_and_says_how_many(tmp_path, capsys):
    p = write_jsonl(tmp_path / "mixed.jsonl", [ROWS[0], "nope", {"prompt": ""}, ROWS[1], "[]"])
    items = load_items(str(p), prompt_field="prompt", max_errors=2, skip_invalid=True)
    assert [it["_line"] for it in items] == [1, 4]
    err = capsys.readouterr().err
    assert "skipped 3 bad row(s)" in err and f"{p}:2: bad JSON" in err and "(and 1 more)" in err
    with pytest.raises(DataError, match="set data.skip_invalid = true to skip them"):
        load_items(str(p), prompt_field="prompt")


def test_text_fields_must_be_non_empty_strings(tmp_path):
    p = write_jsonl(tmp_path / "sft.jsonl", [
        {"prompt": "a", "completion": "b"},
        {"prompt": "a", "completion": 7},
        {"prompt": "a", "completion": "  "},
        {"prompt": "a"},
    ])
    errs = errors_of(source=str(p), prompt_field="prompt", text_fields=["completion"])
    assert errs == [
        f"{p}:2: 'completion' must be a string, got int 7",
        f"{p}:3: 'completion' is empty",
        f"{p}:4: missing required field 'completion'; fields present: 'prompt'",
    ]


def test_invalid_utf8_named_by_line_also_when_skipping(tmp_path, capsys):
    p = tmp_path / "bad.jsonl"
    p.write_bytes(b'{"prompt": "ok"}\n{"prompt": "caf\xe9"}\n{"prompt": "fine"}\n')
    assert errors_of(source=str(p)) == [
        f"{p}:2: not valid UTF-8 (byte 0xe9 at column 16); fix: re-save the file as UTF-8"]
    assert [it["_line"] for it in load_items(str(p), prompt_field="prompt", skip_invalid=True)] == [1, 3]
    assert f"{p}:2: not valid UTF-8" in capsys.readouterr().err
    c = tmp_path / "bad.csv"
    c.write_bytes(b"prompt,answer\nx,1\ncaf\xe9,2\n")
    assert errors_of(source=str(c)) == [f"{c}:3: not valid UTF-8 (byte 0xe9 at column 4); fix: re-save the file as UTF-8"]


def test_byte_order_mark_accepted(tmp_path):
    j, c = tmp_path / "bom.jsonl", tmp_path / "bom.csv"
    j.write_bytes(b'\xef\xbb\xbf{"prompt": "a", "answer": "1"}\n')
    c.write_bytes(b"\xef\xbb\xbfprompt,answer\na,1\n")
    for p in (j, c):
        assert [(it["prompt"], it["answer"]) for it in load_items(str(p), required=["answer"], prompt_field="prompt")] == [("a", "1")]


def test_huge_line_refused_in_bounded_time(tmp_path, monkeypatch):
    """A 50 MB prompt line took minutes and 19 GiB before; now it is refused while reading."""
    from rlft.data import loading

    monkeypatch.setattr(loading, "MAX_LINE_CHARS", 1000)
    p = tmp_path / "big.jsonl"
    p.write_text(json.dumps({"prompt": "x" * 5000}) + "\n" + json.dumps({"prompt": "ok"}) + "\n")
    assert errors_of(source=str(p)) == [f"{p}:1: line longer than 1,000 characters; fix: shorten it (rlft.data.loading.MAX_LINE_CHARS)"]
    c = tmp_path / "big.csv"
    c.write_text("prompt\nok\n" + "y" * 5000 + "\nok\n")
    assert errors_of(source=str(c)) == [f"{c}:3: line longer than 1,000 characters, the rest of the file is not read; "
                                        f"fix: shorten it (rlft.data.loading.MAX_LINE_CHARS)"]
    q = tmp_path / "quoted.csv"  # short lines, one quoted field over the limit
    q.write_text('prompt\n"' + ("z" * 100 + "\n") * 20 + '"\nok\n')
    (msg,) = errors_of(source=str(q))
    assert msg.startswith(f"{q}:2: bad CSV: field larger than field limit (1000), the rest of the file is not read")


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_huge_line_read_in_bounded_memory(tmp_path, monkeypatch, suffix):
    """The csv module reads a whole line before its field limit: lines are cut at MAX_LINE_CHARS instead."""
    import tracemalloc

    from rlft.data import loading

    monkeypatch.setattr(loading, "MAX_LINE_CHARS", 1000)
    p = tmp_path / f"big{suffix}"
    head = "prompt\n" if suffix == ".csv" else ""
    p.write_text(head + "x" * 4_000_000 + "\n")
    tracemalloc.start()
    try:
        (msg,) = errors_of(source=str(p))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert msg.startswith(f"{p}:{2 if head else 1}: line longer than 1,000 characters")
    assert peak < 1_000_000, f"peak {peak:,} bytes for a 4 MB line"
