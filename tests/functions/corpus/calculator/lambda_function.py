"""A direct-invocation calculator that logs through the root logger."""

import logging
import math

logger = logging.getLogger()
logger.setLevel(logging.INFO)

OPERATIONS = {
    "square": lambda n: n * n,
    "square root": math.sqrt,
    "increment": lambda n: n + 1,
    "decrement": lambda n: n - 1,
}


def lambda_handler(event, context):
    logger.info("Event: %s", event)
    result = OPERATIONS[event["action"]](event["number"])
    logger.info("Calculated result of %s", result)
    return {"result": result}
