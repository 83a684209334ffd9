"""Worlds on SQLite: isolation rules, end-state scoring, views, the built-in retail world.

Run: OMP_NUM_THREADS=1 python -m pytest -q tests/test_worlds.py
"""

import sqlite3
from concurrent.futures import ThreadPoolExecutor

import pytest

from rlft.envs.tools import TOOL_FORMATS
from rlft.envs.worlds import sandbox
from rlft.envs.tools import ToolCall
from rlft.envs.worlds.check import check, gold_replies, play, probes, wrong_row
from rlft.envs.worlds.env import WorldEnv
from rlft.envs.worlds.world import WorldError, load_world

COMPACT = TOOL_FORMATS["compact"]


@pytest.fixture(scope="module")
def world():
    return load_world("retail")


def test_drop_table_leaves_the_pristine_database_unchanged(world):
    before = sandbox.db_hash(world.pristine)
    db = world.open()
    with pytest.raises(sqlite3.DatabaseError, match="not authorized"):
        db.execute("DROP TABLE orders")
    # even with the authorizer switched off, the episode only ever had a copy
    db.conn.set_authorizer(None)
    db.conn.execute("DROP TABLE orders")
    db.conn.execute("DELETE FROM items")
    db.conn.commit()
    assert sandbox.db_hash(world.pristine) == before
    assert world.open().query("SELECT count(*) AS n FROM orders")[0]["n"] > 0


@pytest.mark.parametrize("sql", [
    "ATTACH DATABASE ':memory:' AS other",
    "SELECT load_extension('/tmp/evil.so')",
    "PRAGMA writable_schema = 1",
    "CREATE TABLE t (x)",
    "ALTER TABLE orders ADD COLUMN x",
    "CREATE INDEX i ON orders (total)",
])
def test_attach_extensions_pragma_and_schema_writes_refused(world, sql):
    db = world.open()
    db.writable = True  # even inside a write tool
    with pytest.raises(sqlite3.DatabaseError, match="not authorized"):
        db.execute(sql)


def test_read_tools_cannot_write(world):
    db = world.open()
    with pytest.raises(sqlite3.DatabaseError, match="not authorized"):
        db.execute("UPDATE orders SET total = 0")

    @sandbox.write
    def zero(db):
        return db.execute("UPDATE orders SET total = 0")

    @sandbox.read
    def sneaky(db):
        return db.execute("UPDATE orders SET total = 0")

    with pytest.raises(sqlite3.DatabaseError):
        db.call(sneaky)
    assert db.call(zero) > 0 and db.touched == {"orders"}


def test_runaway_recursive_query_is_interrupted(world):
    db = sandbox.Database(world.pristine, sandbox.Limits(seconds=0.2))
    with pytest.raises(sqlite3.OperationalError, match="interrupted"):
        db.query("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c")
    assert db.query("SELECT 1 AS one") == [{"one": 1}]  # the connection still works


def test_results_capped_in_rows_and_bytes(world):
    db = sandbox.Database(world.pristine, sandbox.Limits(max_rows=5, max_bytes=100))
    with pytest.raises(sandbox.ResultTooLarge, match="more than 5 rows"):
        db.query("SELECT * FROM items")
    with pytest.raises(sandbox.ResultTooLarge, match="bytes"):
        db.query("SELECT * FROM customers LIMIT 5")


def test_64_parallel_episodes_do_not_see_each_other(world):
    order_ids = [r["order_id"] for r in world.open().query("SELECT order_id FROM orders ORDER BY order_id LIMIT 64")]

    def episode(i):
        db = world.open()
        db.writable = True
        db.execute("UPDATE orders SET total = ? WHERE order_id = ?", 100000 + i, order_ids[i])
        db.conn.commit()
        seen = db.query("SELECT order_id, total FROM orders WHERE total >= 100000")
        db.close()
        return seen

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(episode, range(64)))
    assert results == [[{"order_id": order_ids[i], "total": 100000 + i}] for i in range(64)]
    assert world.open().query("SELECT count(*) AS n FROM orders WHERE total >= 100000") == [{"n": 0}]


def test_every_retail_task_is_solvable_and_not_trivial(world):
    assert len(world.tasks["train"]) >= 60 and len(world.tasks["eval"]) >= 30
    report = check(world)
    assert report["ok"], report["problems"][:3]


def task_of(world, kind):
    return next(t for t in world.tasks["train"] if t["kind"] == kind)


def test_wrong_refund_is_a_violation_with_diagnostics(world):
    task = task_of(world, "late")
    oid = task["gold_actions"][0]["arguments"]["order_id"]
    item = int(task["instruction"].split()[2])
    reward, info = play(world, task, [
        f"call get_order(order_id={oid})",
        f'call refund_item(order_id={oid}, item={item})',
        "refunded 10. denied",
    ])
    assert reward == 0.0 and info["violation"]
    assert set(info["diff"]) == {"items", "refunds"} and info["diff"]["refunds"]["missing"] == []
    # the same episode with partial credit: outputs stated (1 of 2 checks)
    env = WorldEnv(world, task, world.view("full"), COMPACT, partial_credit=True)
    env.initial_observation()
    env.step(f'call refund_item(order_id={oid}, item={item})')
    result = env.step("denied")
    assert result.done and result.reward == 0.5


@pytest.mark.parametrize("kind", ["refund", "cancel"])
def test_a_write_task_is_passed_only_by_the_right_write(world, kind):
    """The end state is compared on every table the gold actions wrote, so saying what should have
    been done (with or without the reads) scores 0; so does the write on another row."""
    writes = lambda t: [i for i, a in enumerate(t["gold_actions"]) if world.tools[a["name"]].kind == "write"]  # noqa: E731
    task = next(t for t in world.tasks["train"] if t["kind"] == kind and wrong_row(world, t["gold_actions"], writes(t)))
    calls = [COMPACT.render(ToolCall(a["name"], a["arguments"])) for a in task["gold_actions"]]
    reads = [c for c, a in zip(calls, task["gold_actions"]) if world.tools[a["name"]].kind == "read"]
    outputs = " ".join(task["outputs"])
    assert task["outputs"] and len(reads) < len(calls)
    for replies in ([outputs], [*reads, outputs]):  # stated only; reads then stated
        reward, info = play(world, task, replies)
        assert reward == 0.0 and not info["violation"] and info["diff"], replies
    wrong = wrong_row(world, task["gold_actions"], writes(task))
    assert wrong != task["gold_actions"]
    reward, info = play(world, task, [COMPACT.render(ToolCall(a["name"], a["arguments"])) for a in wrong] + [outputs])
    assert reward == 0.0 and info["violation"]
    assert play(world, task, [*calls, outputs])[0] == 1.0


def test_world_check_probes_catch_a_scorer_that_ignores_the_gold_writes(world, monkeypatch):
    """The hole this closed: comparing only the tables the agent wrote. With it put back, the
    probes report the write tasks as passed by stating their outputs or reading only."""
    import dataclasses

    from rlft.envs.worlds import scoring

    small = dataclasses.replace(world, tasks={"eval": world.tasks["eval"][:12]}, gold={})
    monkeypatch.setattr(scoring, "gold_written", lambda w, t: {})
    problems = {p["problem"] for p in check(small)["problems"]}
    assert {"reward hack 'stated' scores", "reward hack 'reads only' scores"} <= problems


def test_tool_mistakes_come_back_as_messages(world):
    task = task_of(world, "refund")
    pending = task_of(world, "cancel")["gold_actions"][0]["arguments"]["order_id"]
    env = WorldEnv(world, task, world.view("full"), COMPACT)
    env.initial_observation()
    for reply, expected in [
        ("call get_order(order_id=1)", "error: LookupError: no order 1"),
        ("call get_order(12)", "error: get_order: pass arguments by name"),
        ("call refund_item(order_id=1)", "error: refund_item needs item"),
        (f"call refund_item(order_id={pending}, item=1)", f"error: LookupError: no return request was filed for item 1 of order {pending}"),
        ("call drop_everything()", "error: no tool named 'drop_everything'"),
    ]:
        result = env.step(reply)
        assert not result.done and result.messages[0]["content"].startswith(expected), result.messages


def test_scripted_user_turns_and_assertions(world):
    base = task_of(world, "cancel")
    oid = base["gold_actions"][0]["arguments"]["order_id"]
    task = {
        "id": "custom", "instruction": "Hi, I need help.", "user_turns": [f"Cancel order {oid}."],
        "assertions": [{"sql": f"SELECT status FROM orders WHERE order_id = {oid}", "expect": [["cancelled"]]}],
    }
    env = WorldEnv(world, task, world.view("full"), COMPACT)
    env.initial_observation()
    assert env.step("Which order?").messages == [{"role": "user", "content": f"Cancel order {oid}."}]
    env.step(f"call cancel_order(order_id={oid})")
    result = env.step("cancelled")
    assert result.done and result.reward == 1.0


def test_views_render_the_same_state_differently(world):
    task = task_of(world, "refund")
    oid = task["gold_actions"][0]["arguments"]["order_id"]
    shown = {}
    for view in ("minimal", "full"):
        env = WorldEnv(world, task, world.view(view), COMPACT)
        shown[view] = env.step(f"call get_order(order_id={oid})").messages[0]["content"]
    assert "days_since_delivery=" in shown["minimal"] and "price=" in shown["minimal"]
    assert "tracking=" in shown["full"] and "tracking=" not in shown["minimal"]
    assert len(shown["minimal"]) < len(shown["full"])
    with pytest.raises(WorldError, match="views: full, minimal"):
        world.view("tiny")


def test_gold_replies_score_one_through_every_view(world):
    for view in ("minimal", "full"):
        for task in world.tasks["eval"][:10]:
            assert play(world, task, gold_replies(task, COMPACT), view)[0] == 1.0


def test_unknown_world_names_the_built_in_ones(tmp_path):
    with pytest.raises(WorldError, match="built-in worlds are retail"):
        load_world(str(tmp_path / "nowhere"))
    (tmp_path / "schema.sql").write_text("CREATE TABLE t (x);")
    with pytest.raises(WorldError, match="seed.sql: missing"):
        load_world(str(tmp_path))


def test_demonstrator_notes_then_decides_and_breaks_only_the_30_day_rule(world):
    import random

    from rlft.envs.worlds.retail.generate import demonstrate
    from rlft.tasks.world_demo import looked_up

    db, fmt = world.open(), TOOL_FORMATS["compact"]
    for task in world.tasks["train"][:40]:
        order = looked_up(world, db, task)
        honest = demonstrate(task, order, random.Random(0), 0.0, fmt)
        assert play(world, task, honest)[0] == 1.0  # notes before the call do not change the episode
        assert honest[1].split("\n")[0].startswith(f"status={order['status']}")
        broken = demonstrate(task, order, random.Random(0), 1.0, fmt)
        assert (broken == honest) == (task["kind"] != "late")
        if task["kind"] == "late":
            reward, info = play(world, task, broken)
            assert reward == 0.0 and info["violation"]


def test_world_demo_fast(tmp_path):
    from rlft.tasks import world_demo

    results = world_demo.main(["--out", str(tmp_path), "--views", "minimal", "--fast"])
    r = results["views"]["minimal"]
    assert {"sft", "rl", "curve"} <= set(r) and [c["step"] for c in r["curve"]] == [1, 2]
    assert (tmp_path / "world-curves.png").exists() and (tmp_path / "rl-minimal.toml").exists()
