"""A broken world folder is one line naming the file, the line and the fix: a failing SQL
statement in schema.sql or seed.sql, a syntax error or an exception while importing tools.py,
a tool whose signature cannot become a schema; and `rlft world check` reports the same line.

Run: OMP_NUM_THREADS=1 python -m pytest -q tests/test_world_errors.py
"""

import sqlite3
import time

import pytest

from rlft.envs.worlds import sandbox
from rlft.envs.worlds.check import main as world_check
from rlft.envs.worlds.world import WorldError, load_world

SCHEMA = "CREATE TABLE customers (customer_id INTEGER PRIMARY KEY, name TEXT);\n"
SEED = ("-- two customers\n"
        "INSERT INTO customers VALUES (1, 'Ann; the first');\n"
        "INSERT INTO customers VALUES (2, 'Bo');\n")
TOOLS = '''from rlft.envs.worlds.sandbox import Database, read


@read
def get_customer(db: Database, customer_id: int) -> dict:
    """Look up a customer.

    Args:
        customer_id: the customer number
    """
    return db.query("SELECT * FROM customers WHERE customer_id = ?", customer_id)[0]
'''
TASK = ('{"id": "t1", "instruction": "Who is customer 2?", "outputs": ["Bo"], '
        '"gold_actions": [{"name": "get_customer", "arguments": {"customer_id": 2}}]}\n')


def make_world(folder, **files):
    """A small valid world in ``folder``, with ``files`` (name -> text) replaced."""
    contents = {"schema.sql": SCHEMA, "seed.sql": SEED, "policy.md": "Be helpful.\n", "tools.py": TOOLS,
                "tasks/train.jsonl": TASK, **files}
    for name, text in contents.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return str(folder)


def world_error(folder) -> str:
    with pytest.raises(WorldError) as e:
        load_world(str(folder))
    assert "\n" not in str(e.value) and "Traceback" not in str(e.value)
    return str(e.value)


def test_a_good_world_loads_and_its_check_passes(tmp_path, capsys):
    world = load_world(make_world(tmp_path))
    assert world.open().query("SELECT name FROM customers WHERE customer_id = 1") == [{"name": "Ann; the first"}]
    assert world_check([str(tmp_path)]) == 0


def test_statements_split_outside_quotes_and_comments_with_their_lines():
    script = ("CREATE TABLE t (x TEXT);\n\n"
              "-- a comment; with a semicolon\n"
              "INSERT INTO t VALUES ('a;b'), (\"c\");  /* two; */ INSERT INTO t VALUES ('it''s');\n"
              "CREATE TRIGGER tr AFTER INSERT ON t BEGIN\n  UPDATE t SET x = x;\n  SELECT 1;\nEND;\n"
              "INSERT INTO t VALUES ('last, no semicolon')")
    got = [(line, " ".join(sql.split())) for line, sql in sandbox.statements(script)]
    assert [line for line, _ in got] == [1, 4, 4, 5, 9]
    assert got[1][1].endswith("INSERT INTO t VALUES ('a;b'), (\"c\");")
    assert got[2][1] == "INSERT INTO t VALUES ('it''s');"  # the comment before it left out
    assert got[3][1].startswith("CREATE TRIGGER") and got[3][1].endswith("END;")
    conn = sqlite3.connect(":memory:", isolation_level=None)
    sandbox.run_script(conn, script, "x.sql")
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 4


def test_seed_error_names_file_line_statement_and_sqlite_message(tmp_path):
    bad = SEED + "\nINSERT INTO custmers VALUES (3, 'Cy');\nINSERT INTO customers VALUES (4, 'Di');\n"
    msg = world_error(make_world(tmp_path, **{"seed.sql": bad}))
    assert msg == (f"{tmp_path / 'seed.sql'}:5: SQLite error: no such table: custmers in "
                   f"`INSERT INTO custmers VALUES (3, 'Cy');`; fix that statement")


def test_schema_error_and_a_long_statement_shortened(tmp_path):
    long = "INSERT INTO customers VALUES " + ", ".join(f"({i}, 'n{i}')" for i in range(3, 200)) + ", (1, 'dup');\n"
    msg = world_error(make_world(tmp_path, **{"seed.sql": SEED + long}))
    assert msg.startswith(f"{tmp_path / 'seed.sql'}:4: SQLite error: UNIQUE constraint failed: customers.customer_id in "
                          f"`INSERT INTO customers VALUES (3, 'n3')")
    assert "...`; fix that statement" in msg and len(msg) < 300
    msg = world_error(make_world(tmp_path, **{"schema.sql": SCHEMA + "CREATE TABLE orders (id INTEGER,,);\n"}))
    assert msg.startswith(f"{tmp_path / 'schema.sql'}:2: SQLite error: near \",\": syntax error in `CREATE TABLE orders")


def test_a_big_seed_is_read_fast_and_its_error_found(tmp_path):
    rows = "".join(f"INSERT INTO customers VALUES ({i}, 'name {i}');\n" for i in range(3, 50_003))
    t0 = time.perf_counter()
    msg = world_error(make_world(tmp_path, **{"seed.sql": SEED + rows + "INSERT INTO customers VALUES (3, 'again');\n"}))
    assert time.perf_counter() - t0 < 5  # about 0.3 s for 50,000 statements here
    assert msg.startswith(f"{tmp_path / 'seed.sql'}:50004: SQLite error: UNIQUE constraint failed")


def test_seed_not_utf8_names_the_line(tmp_path):
    make_world(tmp_path)
    (tmp_path / "seed.sql").write_bytes(SEED.encode() + b"INSERT INTO customers VALUES (3, 'Jos\xe9');\n")
    assert world_error(tmp_path) == (f"{tmp_path / 'seed.sql'}:4: not valid UTF-8 (byte 0xe9 at column 38); "
                                     f"fix: re-save the file as UTF-8")


def test_tools_syntax_error_names_file_and_line(tmp_path):
    bad = TOOLS.replace("    return db.query(", "    return db.query((")
    msg = world_error(make_world(tmp_path, **{"tools.py": bad}))
    assert msg.startswith(f"{tmp_path / 'tools.py'}:11: syntax error: ") and msg.endswith("; fix the code")


def test_tools_import_time_exception_names_the_line(tmp_path):
    bad = TOOLS + "\nLIMITS = {'max': 1}['min']\n"
    msg = world_error(make_world(tmp_path, **{"tools.py": bad}))
    assert msg == f"{tmp_path / 'tools.py'}:13: importing the tools raised KeyError: 'min'; fix tools.py"
    msg = world_error(make_world(tmp_path, **{"tools.py": "import no_such_module_here\n" + TOOLS}))
    assert msg.startswith(f"{tmp_path / 'tools.py'}:1: importing the tools raised ModuleNotFoundError")


@pytest.mark.parametrize("change, expected", [
    (("customer_id: int)", "customer_id)"), "tool get_customer: parameter 'customer_id' needs a type annotation"),
    (("customer_id: int)", "customer_id: set)"), "tool get_customer: tool parameter type <class 'set'> has no JSON schema"),
    (("customer_id: int)", "customer_id: Customer)"), "tool get_customer: NameError: name 'Customer' is not defined"),
    (("db: Database, customer_id", "customer_id: int, db: Database, extra"), "tool get_customer: the first parameter must be db"),
])
def test_a_misdeclared_tool_is_named_with_its_line(tmp_path, change, expected):
    msg = world_error(make_world(tmp_path, **{"tools.py": "from __future__ import annotations\n" + TOOLS.replace(*change)}))
    assert msg.startswith(f"{tmp_path / 'tools.py'}:5: {expected}"), msg


def test_a_gold_action_naming_a_missing_tool_is_named(tmp_path):
    msg = world_error(make_world(tmp_path, **{"tasks/train.jsonl": TASK.replace('"get_customer"', '"get_client"')}))
    assert msg == f"{tmp_path / 'tasks/train.jsonl'}:1: gold action 'get_client' is not a tool; tools: get_customer"


def test_world_check_reports_the_same_line_in_one_line(tmp_path, capsys):
    make_world(tmp_path, **{"seed.sql": SEED + "INSERT INTO customers VALUES (9, 'x', 'extra');\n"})
    assert world_check([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == (f"rlft world check: error: {tmp_path / 'seed.sql'}:4: SQLite error: table customers has 2 columns "
                   f"but 3 values were supplied in `INSERT INTO customers VALUES (9, 'x', 'extra');`; "
                   f"fix that statement\n")


def test_views_toml_errors_are_one_line(tmp_path):
    msg = world_error(make_world(tmp_path, **{"views.toml": "[short]\nfields = = 1\n"}))
    assert msg.startswith(f"{tmp_path / 'views.toml'}:2: TOML syntax error")
    msg = world_error(make_world(tmp_path, **{"views.toml": "short = 3\n"}))
    assert msg == f"{tmp_path / 'views.toml'}: [short] must be a table with fields = [\"name\", ...]"
