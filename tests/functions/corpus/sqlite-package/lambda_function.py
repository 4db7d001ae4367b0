"""A product catalogue shipped as an SQLite file in the package: looked up
read-only in place, or copied to /tmp to be written."""

import os
import shutil
import sqlite3

PACKAGED = os.path.join(os.environ["LAMBDA_TASK_ROOT"], "data", "products.db")
LOCAL = "/tmp/products.db"


def lookup(event, context):
    conn = sqlite3.connect(f"file:{PACKAGED}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT sku, name, price_cents FROM products WHERE category = ? ORDER BY sku",
            (event["category"],),
        ).fetchall()
    finally:
        conn.close()
    return [list(row) for row in rows]


def record_sale(event, context):
    if not os.path.exists(LOCAL):
        shutil.copy2(PACKAGED, LOCAL)
    conn = sqlite3.connect(LOCAL)
    try:
        with conn:
            conn.execute("UPDATE products SET stock = stock - ? WHERE sku = ?", (event["quantity"], event["sku"]))
        (stock,) = conn.execute("SELECT stock FROM products WHERE sku = ?", (event["sku"],)).fetchone()
    finally:
        conn.close()
    return {"sku": event["sku"], "stock": stock}
