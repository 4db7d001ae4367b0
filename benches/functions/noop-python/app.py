"""The latency bench's no-op python function: it echoes its event."""


def handler(event, context):
    return event
