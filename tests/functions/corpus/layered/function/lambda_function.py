"""A function whose dependencies come from layers: a library installed in
one layer's python/lib/python3.N/site-packages, a shared module in another
layer's python/, and a program in that layer's bin/ (on PATH)."""

import subprocess

import jmespath
import order_rules


def lambda_handler(event, context):
    big = jmespath.search(order_rules.BIG_ORDERS, event)
    shouted = subprocess.run(["shout", *big], capture_output=True, text=True, check=True)
    return {
        "big": big,
        "shouted": shouted.stdout.strip(),
        "modules": [jmespath.__file__, order_rules.__file__],
    }
