-- The retail returns-and-refunds desk.
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);  -- today's date lives here
CREATE TABLE customers (
    customer_id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT, phone TEXT, city TEXT,
    member_since TEXT, tier TEXT
);
CREATE TABLE orders (
    order_id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers,
    placed_on TEXT NOT NULL, status TEXT NOT NULL CHECK (status IN ('pending', 'shipped', 'delivered', 'cancelled')),
    payment TEXT, total INTEGER NOT NULL
);
CREATE TABLE items (  -- an order's lines: item 1, 2, 3 of the order
    order_id INTEGER NOT NULL REFERENCES orders, item INTEGER NOT NULL, product TEXT NOT NULL,
    category TEXT, price INTEGER NOT NULL, final_sale INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'ok' CHECK (status IN ('ok', 'returned')),
    PRIMARY KEY (order_id, item)
);
CREATE TABLE returns (  -- return requests customers filed, with their reason
    order_id INTEGER NOT NULL, item INTEGER NOT NULL,
    reason TEXT NOT NULL CHECK (reason IN ('damaged', 'wrong_item', 'changed_mind')),
    PRIMARY KEY (order_id, item), FOREIGN KEY (order_id, item) REFERENCES items
);
CREATE TABLE shipments (
    order_id INTEGER PRIMARY KEY REFERENCES orders, carrier TEXT, tracking TEXT,
    shipped_on TEXT, delivered_on TEXT
);
CREATE TABLE refunds (
    refund_id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL REFERENCES orders,
    item INTEGER, amount INTEGER NOT NULL, reason TEXT NOT NULL
);
