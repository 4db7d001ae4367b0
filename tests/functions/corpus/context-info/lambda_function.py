"""Logs what the context object says about the invocation and the
function, and answers with what a mobile client sent along."""

import time


def lambda_handler(event, context):
    print("Function:", context.function_name, context.function_version)
    print("Function ARN:", context.invoked_function_arn)
    print("Log group:", context.log_group_name)
    print("Log stream:", context.log_stream_name)
    print("Request ID:", context.aws_request_id)
    print("Memory limit (MB):", context.memory_limit_in_mb)
    before = context.get_remaining_time_in_millis()
    time.sleep(0.2)
    after = context.get_remaining_time_in_millis()
    print("Time remaining shrinks:", 150 <= before - after <= 1000)

    client = context.client_context
    identity = context.identity
    return {
        "app": None if client is None else [client.client.app_title, client.client.app_version_name],
        "custom": None if client is None else client.custom,
        "env": None if client is None else client.env,
        "identity": [identity.cognito_identity_id, identity.cognito_identity_pool_id],
    }
