"""The parts of sprout's Python runtime that only some functions need.

bootstrap.py loads this file (from its own directory) the first time a
function needs one of these: an error to report, the `logging` module, a
Decimal in a result, a client context. Keeping them out of bootstrap.py
keeps them out of every runtime's start-up (Python compiles a script on each
start). Each behaves as AWS Lambda's Python runtime (awslambdaric) does.
"""

import os
import sys
import time


def stack_trace(exc):
    """An exception's traceback from the first frame outside bootstrap.py,
    each frame as `  File "/var/task/app.py", line 3, in handler\\n
    raise ...\\n` (frames as tuples: no column carets, as Lambda)."""
    import traceback

    frames = [(f.filename, f.lineno, f.name, f.line) for f in traceback.extract_tb(exc.__traceback__)]
    for i, frame in enumerate(frames):
        if "/bootstrap.py" not in frame[0]:
            frames = frames[i:]
            break
    return traceback.format_list(frames)


def syntax_error_trace(exc):
    """The one-entry stackTrace Lambda reports for a SyntaxError."""
    return [f'  File "{exc.filename}" Line {exc.lineno}\n    {exc.text}']


def log_error(error):
    """Write an error to stdout the way Lambda's runtime logs it: one
    record, lines joined by CR, indentation as no-break spaces; with
    AWS_LAMBDA_LOG_FORMAT=JSON, one JSON object."""
    if (os.environ.get("AWS_LAMBDA_LOG_FORMAT") or "").upper() == "JSON":
        import json

        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        sys.stdout.write(json.dumps({"timestamp": stamp, "log_level": "ERROR", **error}) + "\n")
        return
    head = "[ERROR]"
    if error["errorType"]:
        head += " " + error["errorType"] + (":" if error["errorMessage"] else "")
    if error["errorMessage"]:
        head += " " + error["errorMessage"]
    lines = [head, "Traceback (most recent call last):"]
    for entry in error["stackTrace"]:
        for line in entry.splitlines() or [""]:
            stripped = line.lstrip(" ")
            lines.append("\u00a0" * (len(line) - len(stripped)) + stripped)
    sys.stdout.write("\r".join(lines) + "\n")


def dumps_with_decimals(value, encode_string, unserializable):
    """JSON text of a value holding a decimal.Decimal: the Decimal written
    as `str(d)` (`1.10`, `1E+2`), a NaN one as NaN, as Lambda's
    simplejson-based encoder does; the rest as bootstrap's json_dumps."""
    import decimal
    import json.encoder

    class Digits(float):
        """A Decimal on its way through json's float path."""

    def default(obj):
        if not isinstance(obj, decimal.Decimal):
            unserializable(obj)
        if obj.is_nan():
            return float("nan")
        digits = Digits(obj)
        digits.text = str(obj)
        return digits

    def floatstr(f):
        if isinstance(f, Digits):
            return f.text
        if f != f:
            return "NaN"
        if f in (float("inf"), float("-inf")):
            return "Infinity" if f > 0 else "-Infinity"
        return float.__repr__(f)

    encode = json.encoder._make_iterencode({}, default, encode_string, None, floatstr, ": ", ", ", False, False, True)
    return "".join(encode(value, 0))


def caller_context(meta, loads):
    """(context.client_context, context.identity) from the INVOKE meta's
    `client_context` and `cognito_identity`, JSON objects in strings as
    Lambda's headers carry them (None where absent); ValueError with
    Lambda's message when one is not JSON."""

    def parse(key, what):
        value = meta.get(key)
        if not isinstance(value, str):
            return value
        try:
            return loads(value)
        except ValueError as exc:
            raise ValueError(f"Unable to parse {what} JSON: {exc}") from None

    client_context = parse("client_context", "Client Context")
    identity = parse("cognito_identity", "Cognito Identity")
    return (
        None if client_context is None else ClientContext(client_context),
        None if identity is None else CognitoIdentity(identity),
    )


def fields_repr(obj, names, class_name=None):
    """`Name([a=1,b=2])`, how Lambda's context objects print."""
    fields = ",".join(f"{name}={getattr(obj, name)}" for name in names)
    return f"{class_name or type(obj).__name__}([{fields}])"


def context_repr(context):
    names = ("aws_request_id", "log_group_name", "log_stream_name", "function_name", "memory_limit_in_mb")
    names += ("function_version", "invoked_function_arn", "client_context", "identity", "tenant_id")
    return fields_repr(context, names, "LambdaContext")


class CognitoIdentity:
    """context.identity: the Cognito identity that authorised the call."""

    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self, fields):
        self.cognito_identity_id = fields.get("cognitoIdentityId")
        self.cognito_identity_pool_id = fields.get("cognitoIdentityPoolId")

    def __repr__(self):
        return fields_repr(self, self.__slots__)


class ClientContext:
    """context.client_context: what the caller's mobile SDK sent."""

    __slots__ = ("client", "custom", "env")

    def __init__(self, fields):
        client = fields.get("client")
        self.client = None if client is None else Client(client)
        self.custom = fields.get("custom")
        self.env = fields.get("env")

    def __repr__(self):
        return fields_repr(self, ("custom", "env", "client"))


class Client:
    __slots__ = ("installation_id", "app_title", "app_version_name", "app_version_code", "app_package_name")

    def __init__(self, fields):
        for name in Client.__slots__:
            setattr(self, name, fields.get(name))

    def __repr__(self):
        return fields_repr(self, self.__slots__)


LOG_FORMAT = "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n"


def write_record(text):
    """One log record to stdout. Lambda frames each record for its log
    service, so a record needs no newline there; in a line-oriented log one
    that lacks it gets one, or it would run into the next."""
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def setup_logging(logging, request_id, log_format, log_level):
    """A handler on the root logger writing `LOG_FORMAT` lines (UTC times)
    to stdout, JSON lines when `log_format` is JSON, and the root level
    from `log_level` (AWS_LAMBDA_LOG_LEVEL), as Lambda's runtime sets them.
    `request_id()` is the running invocation's id."""

    class LambdaLoggerHandler(logging.Handler):
        def emit(self, record):
            write_record(self.format(record))

    class LambdaLoggerFilter(logging.Filter):
        def filter(self, record):
            record.aws_request_id = request_id()
            record.tenant_id = None
            return True

    logging.Formatter.converter = time.gmtime
    handler = LambdaLoggerHandler()
    if (log_format or "").upper() == "JSON":
        handler.setFormatter(json_formatter(logging)())
    else:
        handler.setFormatter(logging.Formatter(LOG_FORMAT, "%Y-%m-%dT%H:%M:%S"))
    level = {None: "", "TRACE": "DEBUG"}.get(log_level, log_level).upper()
    root = logging.getLogger()
    if level in logging._nameToLevel:
        root.setLevel(level)
    handler.addFilter(LambdaLoggerFilter())
    root.addHandler(handler)


def json_formatter(logging):
    """Lambda's JSON log formatter: one object a line with timestamp, level,
    message, logger, requestId, the exception if any, and the record's extra
    fields."""
    import json
    import traceback

    reserved = {
        *("name", "msg", "args", "levelname", "levelno", "pathname", "filename", "module", "exc_info"),
        *("exc_text", "stack_info", "lineno", "funcName", "created", "msecs", "relativeCreated", "thread"),
        *("threadName", "processName", "process", "aws_request_id", "tenant_id", "_frame_type"),
    }

    class JsonFormatter(logging.Formatter):
        def __init__(self):
            super().__init__(datefmt="%Y-%m-%dT%H:%M:%SZ")

        def format(self, record):
            record.levelno = min(50, max(0, record.levelno)) // 10 * 10
            record.levelname = logging.getLevelName(record.levelno)
            exc = record.exc_info
            result = {
                "timestamp": self.formatTime(record, self.datefmt),
                "level": record.levelname,
                "message": record.getMessage(),
                "logger": record.name,
                "stackTrace": traceback.format_tb(exc[2]) if exc else None,
                "errorType": exc[0].__name__ if exc else None,
                "errorMessage": str(exc[1]) if exc else None,
                "requestId": getattr(record, "aws_request_id", None),
                "location": f"{record.pathname}:{record.funcName}:{record.lineno}" if exc else None,
            }
            extra = record.__dict__.items()
            result.update((key, value) for key, value in extra if key not in reserved and key not in result)
            fields = {key: value for key, value in result.items() if value is not None}
            return json.dumps(fields, ensure_ascii=False) + "\n"

    return JsonFormatter
