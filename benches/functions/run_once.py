"""Run a python handler once, the way a per-request peer of the latency
bench does: import the handler from a code dir, decode the JSON event from
stdin, call handler(event, None), write the JSON result to stdout.

Usage: python3 -I run_once.py CODE_DIR MODULE.FUNCTION
"""

import importlib
import json
import sys


def main():
    code_dir, spec = sys.argv[1], sys.argv[2]
    module_name, function_name = spec.rsplit(".", 1)
    sys.path.insert(0, code_dir)
    handler = getattr(importlib.import_module(module_name), function_name)
    raw = sys.stdin.buffer.read()
    event = json.loads(raw) if raw else None
    sys.stdout.buffer.write(json.dumps(handler(event, None)).encode())


main()
