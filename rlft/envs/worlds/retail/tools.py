"""Tools of the retail returns desk: functions over the episode's database (sandbox.Database).

The tools keep the data consistent (an item must belong to its order, have a return request
filed and be returned once; only a pending order can be cancelled) and compute the amounts, as a
store's systems do (a refund is the price, less the restocking fee when the filed request says
changed_mind; a cancellation refunds the total). They do not enforce the refund policy:
following policy.md is the agent's job, and the end state shows whether it did.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from rlft.envs.worlds.sandbox import Database, read, write

RESTOCKING_FEE = 5  # taken off a refund when the customer changed their mind (policy.md rule 5)


def _today(db: Database) -> date:
    return date.fromisoformat(db.query("SELECT value FROM meta WHERE key = 'today'")[0]["value"])


@read
def get_order(db: Database, order_id: int) -> dict:
    """Look up an order with its items and shipment.

    Args:
        order_id: the order number
    """
    rows = db.query("SELECT * FROM orders WHERE order_id = ?", order_id)
    if not rows:
        raise LookupError(f"no order {order_id}")
    order = rows[0]
    ship = db.query("SELECT carrier, tracking, shipped_on, delivered_on FROM shipments WHERE order_id = ?", order_id)
    delivered = ship[0]["delivered_on"] if ship else None
    order["days_since_delivery"] = (_today(db) - date.fromisoformat(delivered)).days if delivered else "-"
    order["items"] = db.query(
        "SELECT item, product, category, price, final_sale, status FROM items WHERE order_id = ? ORDER BY item",
        order_id,
    )
    order["shipment"] = ship[0] if ship else {}
    return order


@read
def get_customer(db: Database, customer_id: int) -> dict:
    """Look up a customer's profile.

    Args:
        customer_id: the customer number
    """
    rows = db.query("SELECT * FROM customers WHERE customer_id = ?", customer_id)
    if not rows:
        raise LookupError(f"no customer {customer_id}")
    return rows[0]


@write
def refund_item(db: Database, order_id: int, item: int) -> str:
    """Refund a returned item the customer filed a return request for, and mark it returned. The
    amount is the item's price, less the restocking fee of 5 when the request's reason is
    changed_mind (as a store's refund system computes it).

    Args:
        order_id: the order number
        item: the item's number within the order (1, 2, ...)
    """
    rows = db.query(
        "SELECT i.price, i.status, r.reason FROM items i LEFT JOIN returns r ON r.order_id = i.order_id AND r.item = i.item "
        "WHERE i.order_id = ? AND i.item = ?", order_id, item)
    if not rows:
        raise LookupError(f"order {order_id} has no item {item}")
    price, status, reason = rows[0]["price"], rows[0]["status"], rows[0]["reason"]
    if reason is None:
        raise LookupError(f"no return request was filed for item {item} of order {order_id}")
    if status == "returned":
        raise ValueError(f"item {item} of order {order_id} was already returned")
    amount = price - RESTOCKING_FEE * (reason == "changed_mind")
    db.execute("UPDATE items SET status = 'returned' WHERE order_id = ? AND item = ?", order_id, item)
    db.execute("INSERT INTO refunds (order_id, item, amount, reason) VALUES (?, ?, ?, ?)", order_id, item, amount, reason)
    return f"refunded {amount} for item {item}"


@write
def cancel_order(db: Database, order_id: int) -> str:
    """Cancel a pending order and refund its total.

    Args:
        order_id: the order number
    """
    rows = db.query("SELECT status, total FROM orders WHERE order_id = ?", order_id)
    if not rows:
        raise LookupError(f"no order {order_id}")
    if rows[0]["status"] != "pending":
        raise ValueError(f"order {order_id} is {rows[0]['status']}; only pending orders can be cancelled")
    db.execute("UPDATE orders SET status = 'cancelled' WHERE order_id = ?", order_id)
    db.execute("INSERT INTO refunds (order_id, item, amount, reason) VALUES (?, NULL, ?, 'cancelled')", order_id, rows[0]["total"])
    return f"cancelled order {order_id}, refunded {rows[0]['total']}"
