"""Runs programs shipped in the package: one by its path beside this
module, one by name after putting the task root on PATH."""

import os
import subprocess

os.environ["PATH"] = os.environ["PATH"] + ":" + os.environ["LAMBDA_TASK_ROOT"]

WORDCOUNT = os.path.join(os.path.dirname(__file__), "bin", "wordcount")


def lambda_handler(event, context):
    counted = subprocess.run([WORDCOUNT], input=event["text"], capture_output=True, text=True, check=True)
    greeted = subprocess.run(["greet", event["name"]], capture_output=True, text=True, check=True)
    return {"words": int(counted.stdout), "greeting": greeted.stdout.strip()}
