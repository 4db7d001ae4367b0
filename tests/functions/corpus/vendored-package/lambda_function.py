"""Filters an event with JMESPath, from a copy of the package vendored
into the deployment package (requirements.txt, installed with
`pip install --target`)."""

import jmespath

BIG_SPENDERS = jmespath.compile("orders[?total > `100`].customer")


def lambda_handler(event, context):
    return {
        "customers": BIG_SPENDERS.search(event),
        "jmespath": [jmespath.__version__, jmespath.__file__],
    }
