"""A handler written for AWS Lambda's Python runtime, unchanged: it reads a
file shipped beside it by a relative path, logs through the root logger
Lambda sets up, and reports where Lambda says it runs."""

import json
import logging
import os

logger = logging.getLogger()
logger.setLevel(logging.INFO)

with open("greetings.json") as f:  # the working directory is /var/task
    GREETINGS = json.load(f)


def lambda_handler(event, context):
    language = event.get("language", "en")
    logger.info("greeting in %s", language)
    return {
        "message": f"{GREETINGS[language]}, {event.get('name', 'world')}!",
        "function_arn": context.invoked_function_arn,
        "task_root": os.environ["LAMBDA_TASK_ROOT"],
        "file": __file__,
    }
