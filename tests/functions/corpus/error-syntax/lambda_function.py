"""A function still written for the python2.7 runtime."""

import json


def lambda_handler(event, context):
    print "Received event: " + json.dumps(event)
    return event["key1"]
