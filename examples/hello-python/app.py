"""A sprout function: deploy this directory with handler `app.handler`."""


def handler(event, context):
    name = event.get("name") if isinstance(event, dict) else None
    return {
        "message": f"Hello, {name or 'world'}!",
        "request_id": context.aws_request_id,
        "function": context.function_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }
