"""Writes this world's seed.sql and tasks/{train,eval}.jsonl from a seed (the committed files
come from ``python -m rlft.envs.worlds.retail.generate``, seed 0).

Every task gets its own order, built to need one decision of the policy (policy.md); a return
task's request is also filed in ``returns`` with its reason:

| kind            | order                                  | right outcome                   |
| --------------- | -------------------------------------- | ------------------------------- |
| refund          | delivered <= 30 days ago, not final    | refund_item: the price, - 5 for changed_mind |
| refund_fee      | same, reason changed_mind              | refund_item: the price - 5      |
| late            | delivered 31-90 days ago               | deny                            |
| final_sale      | delivered recently, item final_sale=1  | deny                            |
| in_transit      | shipped, not delivered                 | deny                            |
| cancel          | pending                                | cancel_order, refund the total  |

``demonstrate`` is the imperfect demonstrator agent used by the world demo: it follows the policy
except that with probability ``p_break`` it ignores the 30-day window (rule 4).
"""

from __future__ import annotations

import json
import random
from datetime import date, timedelta
from pathlib import Path

from rlft.envs.worlds.retail.tools import RESTOCKING_FEE

TODAY = date(2024, 6, 30)
KINDS = {"refund": 0.2, "refund_fee": 0.15, "late": 0.35, "final_sale": 0.1, "in_transit": 0.1, "cancel": 0.1}
PRODUCTS = [("kettle", "kitchen"), ("blender", "kitchen"), ("lamp", "home"), ("rug", "home"), ("jacket", "clothing"),
            ("boots", "clothing"), ("headphones", "electronics"), ("charger", "electronics"), ("novel", "books")]
NAMES = ["Ada", "Ben", "Cleo", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lea", "Max", "Nia"]
CITIES = ["Austin", "Boston", "Denver", "Fresno", "Omaha", "Tampa"]


def _sql(v) -> str:
    return "NULL" if v is None else str(v) if isinstance(v, int) else "'" + str(v).replace("'", "''") + "'"


def _insert(table: str, row: dict) -> str:
    return f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join(map(_sql, row.values()))});"


def make_order(rng: random.Random, order_id: int, n_items: int, customer_id: int, kind: str) -> tuple[list[str], dict]:
    """SQL rows for one order of ``n_items`` lines shaped for ``kind``; returns (statements, facts
    about the order, with the line a task asks about as ``asked``)."""
    status = {"in_transit": "shipped", "cancel": "pending"}.get(kind, "delivered")
    days = rng.randint(31, 90) if kind == "late" else rng.randint(1, 30)
    delivered = TODAY - timedelta(days=days)
    placed = delivered - timedelta(days=rng.randint(2, 6)) if status == "delivered" else TODAY - timedelta(days=rng.randint(0, 4))
    asked = rng.randint(1, n_items)
    items = []
    for item in range(1, n_items + 1):
        product, category = rng.choice(PRODUCTS)
        final = int(kind == "final_sale") if item == asked else int(rng.random() < 0.2)
        items.append({"order_id": order_id, "item": item, "product": product, "category": category,
                      "price": rng.randint(10, 99), "final_sale": final, "status": "ok"})
    total = sum(it["price"] for it in items)
    sql = [_insert("orders", {"order_id": order_id, "customer_id": customer_id, "placed_on": placed.isoformat(),
                              "status": status, "payment": rng.choice(["card", "paypal", "gift card"]), "total": total})]
    sql += [_insert("items", it) for it in items]
    if status != "pending":
        sql.append(_insert("shipments", {
            "order_id": order_id, "carrier": rng.choice(["UPS", "FedEx", "USPS"]), "tracking": f"TRK{rng.randint(10**8, 10**9)}",
            "shipped_on": (placed + timedelta(days=1)).isoformat(),
            "delivered_on": delivered.isoformat() if status == "delivered" else None}))
    facts = {"item": items[asked - 1], "total": total}
    if kind != "cancel":  # the customer's return request, filed with its reason
        facts["reason"] = "changed_mind" if kind == "refund_fee" else rng.choice(["damaged", "wrong_item", "changed_mind"])
        sql.append(_insert("returns", {"order_id": order_id, "item": asked, "reason": facts["reason"]}))
    return sql, facts


def make_task(rng: random.Random, task_id: str, kind: str, order_id: int, facts: dict) -> dict:
    item = facts["item"]
    if kind == "cancel":
        return {"id": task_id, "kind": kind, "instruction": f"Cancel order {order_id}.",
                "gold_actions": [{"name": "get_order", "arguments": {"order_id": order_id}},
                                 {"name": "cancel_order", "arguments": {"order_id": order_id}}],
                "outputs": [str(facts["total"])]}
    reason = facts["reason"]
    task = {"id": task_id, "kind": kind, "instruction": f"Return item {item['item']} of order {order_id}, reason {reason}.",
            "gold_actions": [{"name": "get_order", "arguments": {"order_id": order_id}}], "outputs": ["denied"]}
    if kind in ("refund", "refund_fee"):
        task["gold_actions"].append({"name": "refund_item", "arguments": {"order_id": order_id, "item": item["item"]}})
        task["outputs"] = [str(item["price"] - RESTOCKING_FEE * (reason == "changed_mind"))]
    return task


def _kind_mix(rng: random.Random, n: int) -> list[str]:
    """``n`` kinds in the proportions of KINDS (rounded), shuffled: every split has the same mix."""
    kinds = [k for k, w in KINDS.items() for _ in range(round(w * n))]
    kinds = (kinds + list(KINDS) * n)[:n]
    rng.shuffle(kinds)
    return kinds


def generate(seed: int = 0, n_train: int = 1000, n_eval: int = 60, n_background: int = 80) -> tuple[str, dict]:
    rng = random.Random(seed)
    sql = [_insert("meta", {"key": "today", "value": TODAY.isoformat()})]
    for c in range(1, 41):
        sql.append(_insert("customers", {
            "customer_id": c, "name": f"{rng.choice(NAMES)} {chr(65 + c % 26)}.", "email": f"c{c}@example.com",
            "phone": f"555-{rng.randint(1000, 9999)}", "city": rng.choice(CITIES),
            "member_since": f"{rng.randint(2015, 2023)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
            "tier": rng.choice(["basic", "gold"])}))
    order_ids = rng.sample(range(1000, 10000), n_train + n_eval + n_background)
    splits: dict[str, list[dict]] = {"train": [], "eval": []}
    kinds = _kind_mix(rng, n_train) + _kind_mix(rng, n_eval) + [rng.choice(list(KINDS)) for _ in range(n_background)]
    for i, (order_id, kind) in enumerate(zip(order_ids, kinds)):
        rows, facts = make_order(rng, order_id, rng.randint(1, 3), rng.randint(1, 40), kind)
        sql += rows
        split = "train" if i < n_train else "eval" if i < n_train + n_eval else None
        if split:
            splits[split].append(make_task(rng, f"{split}-{len(splits[split]):04d}", kind, order_id, facts))
    return "\n".join(sql) + "\n", splits


def demonstrate(task: dict, order: dict, rng: random.Random, p_break: float, fmt) -> list[str]:
    """The demonstrator's replies: the gold actions and the required statement, except that a
    late return is refunded anyway (as if on time) with probability ``p_break``. ``order`` is
    get_order's result for the task's order. The reply that decides (the one after the lookup)
    starts with a note of the fields the decision rests on, copied from that result
    (``status=delivered days_since_delivery=45 final_sale=0``), as an agent that thinks aloud
    writes: the decision then follows text the model has just written."""
    from rlft.envs.tools import ToolCall

    actions = list(task["gold_actions"])
    if task["kind"] == "cancel":
        note, price = f"status={order['status']}", 0
    else:
        words = task["instruction"].split()  # "Return item 2 of order 4821, reason damaged."
        item = next(it for it in order["items"] if it["item"] == int(words[2]))
        price, reason = item["price"], words[-1].rstrip(".")
        note = f"status={order['status']} days_since_delivery={order['days_since_delivery']} final_sale={item['final_sale']}"
    said = "denied" if task["outputs"] == ["denied"] else f"refunded {task['outputs'][0]}"
    if task["kind"] == "late" and rng.random() < p_break:
        actions.append({"name": "refund_item", "arguments": {"order_id": order["order_id"], "item": item["item"]}})
        said = f"refunded {price - RESTOCKING_FEE * (reason == 'changed_mind')}"
    replies = [fmt.render(ToolCall(a["name"], a["arguments"])) for a in actions] + [said]
    replies[1] = f"{note}\n{replies[1]}"
    return replies


def main() -> None:
    here = Path(__file__).parent
    seed_sql, splits = generate()
    (here / "seed.sql").write_text(seed_sql)
    for split, tasks in splits.items():
        (here / "tasks" / f"{split}.jsonl").write_text("".join(json.dumps(t) + "\n" for t in tasks))
    print({k: len(v) for k, v in splits.items()})


if __name__ == "__main__":
    main()
