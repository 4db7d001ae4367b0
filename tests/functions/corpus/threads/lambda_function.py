"""Reads and decodes the same JSON object many times on a thread pool, as
an I/O-bound function fans out its reads."""

import json
import os
from concurrent.futures import ThreadPoolExecutor, as_completed

OBJECT = os.path.join(os.environ["LAMBDA_TASK_ROOT"], "data", "object.json")
MAX_WORKERS = 30


def read_object(index):
    with open(OBJECT) as f:
        contents = json.load(f)
    return index, sum(item["quantity"] for item in contents["items"])


def lambda_handler(event, context):
    reads = event["reads"]
    quantities = {}
    with ThreadPoolExecutor(max_workers=MAX_WORKERS) as executor:
        futures = [executor.submit(read_object, i) for i in range(reads)]
        for future in as_completed(futures):
            index, quantity = future.result()
            quantities[index] = quantity
    return {"reads": len(quantities), "total_quantity": sum(quantities.values())}
