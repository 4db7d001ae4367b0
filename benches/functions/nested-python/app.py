"""The latency bench's python nested caller: it invokes event["target"]
event["calls"] times in one run with a JSON string of event["size"] bytes
(which the echoing target returns) and reports each call's duration as it
saw it, in nanoseconds."""

import time


def handler(event, context):
    target, size = event["target"], event["size"]
    payload = "x" * (size - 2)
    ns = []
    for _ in range(event["calls"]):
        start = time.perf_counter_ns()
        result = context.invoke(target, payload)
        ns.append(time.perf_counter_ns() - start)
        if result != payload:
            raise ValueError(f"{target} did not echo the payload")
    return {"ns": ns}
