"""sprout's Python runtime: runs `handler(event, context)` functions, a
drop-in for AWS Lambda's Python runtime.

Started inside a sandbox by `/usr/bin/python3 -I /var/runtime/start.py`
(which runs this file's bytecode, compiled by the daemon, as `__main__`)
with the ring memfd at fd 3, the request doorbell at fd 4, the response
doorbell at fd 5 and the control socket at fd 6 (runtimes/README.md is the
contract this file implements). Pure standard library; what only some
functions need is in lambda_support.py, loaded on first use.

Life: map the ring, push READY; receive the assignment on fd 6; apply its
environment, enter LAMBDA_TASK_ROOT, import the handler and push INIT_OK (or
INIT_ERROR and exit); then forever: wait on the request doorbell, pop each
INVOKE, run the handler, push RESULT or ERROR. Paths, the context object,
the root logger, result encoding and error bodies follow Lambda's runtime
(awslambdaric) so that Lambda functions run unchanged.

Memory ordering: the daemon's side uses Release/Acquire atomics. This side
writes and reads the 64-bit indices through a memoryview cast to "Q", which
CPython compiles to one aligned 8-byte load or store (never torn), and
relies on x86-64's total store order plus the doorbell syscalls (eventfd
read/write are full barriers) for the rest. On a weakly ordered CPU this
file would need real fences.
"""

import _json
import _socket
import array
import importlib
import mmap
import os
import struct
import sys
import time

RING_FD, REQUEST_BELL_FD, RESPONSE_BELL_FD, CONTROL_FD = 3, 4, 5, 6

MAGIC = b"SPRTRING"
LAYOUT_VERSION = 1
HEADER_SIZE = 4096
RECORD_HEADER = 16
MAX_ASSIGNMENT = 65536

READY, INIT_OK, INIT_ERROR, RESULT, ERROR, CALL, INVOKE, CALL_RESULT = 1, 2, 3, 4, 5, 6, 16, 17

# Indices into the header viewed as u64 words (byte offset / 8).
REQUEST_HEAD, REQUEST_TAIL, RESPONSE_HEAD, RESPONSE_TAIL = 16, 32, 48, 64

_FIXED = struct.Struct("<8sIIQQQQ")  # magic .. response capacity, 48 bytes
_RECORD = struct.Struct("<IHHQ")  # len, type, flags, id
_U32 = struct.Struct("<I")

# How long a push waits for the daemon to drain a full response ring.
FULL_WAIT_S = 10.0

# Where this file is: lambda_support.py is beside it.
RUNTIME_DIR = os.path.dirname(os.path.abspath(__file__))


# JSON through CPython's C accelerator (`_json`, what `json` itself runs
# on), with json.loads' and json.dumps' defaults: importing `json` pulls in
# `re` and `enum`, which would double the runtime's start-up (an empty-pool
# cold start waits for all of it). Handlers import `json` as usual.
class _JsonContext:
    """The settings `_json`'s scanner reads, as json.loads has them."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}.__getitem__


_json_scan = _json.make_scanner(_JsonContext)
_JSON_SPACE = " \t\n\r"


def json_loads(data):
    """json.loads of UTF-8 bytes or str; ValueError on bad JSON."""
    text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    start = len(text) - len(text.lstrip(_JSON_SPACE))
    try:
        value, end = _json_scan(text, start)
        if not text[end:].strip(_JSON_SPACE):
            return value
    # The scanner's errors need `json.decoder` loaded (SystemError without).
    except (StopIteration, SystemError, ValueError):
        pass
    import json  # malformed: json itself says what is wrong

    return json.loads(text)


def _json_unserializable(value):
    decimal = sys.modules.get("decimal")
    if decimal is not None and isinstance(value, decimal.Decimal):
        raise _HasDecimal
    raise TypeError(f"Object of type {value.__class__.__name__} is not JSON serializable")


class _HasDecimal(Exception):
    """The value holds a decimal.Decimal: encode it the slower way."""


# Lambda's encoder escapes non-ASCII text up to python3.11, not from 3.12.
_json_string = _json.encode_basestring_ascii if sys.version_info < (3, 12) else _json.encode_basestring


def json_dumps(value):
    """The JSON text of `value` as Lambda's runtime writes it: ", " and ": "
    separators, NaN allowed, a Decimal in its own digits."""
    encode = _json.make_encoder({}, _json_unserializable, _json_string, None, ": ", ", ", False, False, True)
    try:
        return "".join(encode(value, 0))
    except _HasDecimal:
        return support().dumps_with_decimals(value, _json_string, _json_unserializable)


class RingError(Exception):
    """The ring is not what the contract says: the runtime cannot go on."""


class Ring:
    """The runtime's end of the request and response rings."""

    def __init__(self):
        size = os.fstat(RING_FD).st_size
        if size < HEADER_SIZE:
            raise RingError(f"ring memfd is {size} bytes, smaller than its header")
        self.mm = mmap.mmap(RING_FD, size)  # MAP_SHARED, read-write
        self.buf = memoryview(self.mm)
        self.words = self.buf[:HEADER_SIZE].cast("Q")
        magic, version, header_size, req_off, req_cap, resp_off, resp_cap = _FIXED.unpack_from(self.mm, 0)
        if magic != MAGIC or version != LAYOUT_VERSION or header_size != HEADER_SIZE:
            raise RingError(f"bad ring header: magic {magic!r} version {version} header size {header_size}")
        for off, cap in ((req_off, req_cap), (resp_off, resp_cap)):
            if cap <= RECORD_HEADER or cap & (cap - 1) or off < HEADER_SIZE or off + cap > size:
                raise RingError(f"bad ring region {off}+{cap} in a {size}-byte memfd")
        self.req_off, self.req_cap = req_off, req_cap
        self.resp_off, self.resp_cap = resp_off, resp_cap
        self.max_body = resp_cap - RECORD_HEADER
        # Our own indices, continuing from whoever used this end before.
        self.req_head = self.words[REQUEST_HEAD]
        self.resp_tail = self.words[RESPONSE_TAIL]
        self.calls = 0  # CALLs sent so far; the next one's id is one more

    def call(self, function, payload, detached):
        """Send a CALL and block for its CALL_RESULT: (meta dict, result bytes)."""
        self.calls += 1
        call_id = self.calls
        meta = json_dumps({"function": function, "async": detached}).encode()
        body = _U32.pack(len(meta)) + meta + payload
        if len(body) > self.max_body:
            raise InvokeError("TooLarge", f"call of {len(body)} bytes is over the ring's {self.max_body}-byte limit")
        self.push(CALL, call_id, body)
        while True:
            record = self.pop()
            if record is None:
                self.wait()
                continue
            kind, ident, body = record
            if kind != CALL_RESULT or ident != call_id:
                raise RingError(f"message type {kind} for call {ident} while waiting for call {call_id}")
            (meta_len,) = _U32.unpack_from(body, 0)
            return json_loads(body[4 : 4 + meta_len]), body[4 + meta_len :]

    # -- request ring (we consume) -----------------------------------------

    def _read(self, pos, n):
        off = pos & (self.req_cap - 1)
        start = self.req_off + off
        if off + n <= self.req_cap:
            return self.mm[start : start + n]
        first = self.req_cap - off
        return self.mm[start : start + first] + self.mm[self.req_off : self.req_off + n - first]

    def pop(self):
        """The next request as (type, id, body), or None when empty."""
        head = self.req_head
        available = self.words[REQUEST_TAIL] - head
        if available == 0:
            return None
        if available < RECORD_HEADER or available > self.req_cap:
            raise RingError(f"request ring holds {available} bytes")
        length, kind, _flags, ident = _RECORD.unpack(self._read(head, RECORD_HEADER))
        if RECORD_HEADER + length > available:
            raise RingError(f"request record of {length} bytes runs past the tail")
        body = self._read(head + RECORD_HEADER, length)
        self.req_head = head + RECORD_HEADER + length
        self.words[REQUEST_HEAD] = self.req_head
        return kind, ident, body

    def wait(self):
        """Sleep until the daemon rings the request doorbell."""
        os.eventfd_read(REQUEST_BELL_FD)

    # -- response ring (we produce) ----------------------------------------

    def _write(self, pos, data):
        off = pos & (self.resp_cap - 1)
        start = self.resp_off + off
        n = len(data)
        if off + n <= self.resp_cap:
            self.mm[start : start + n] = data
        else:
            first = self.resp_cap - off
            self.mm[start : start + first] = data[:first]
            self.mm[self.resp_off : self.resp_off + n - first] = data[first:]

    def push(self, kind, ident, body=b""):
        """Append one record and ring the response doorbell."""
        needed = RECORD_HEADER + len(body)
        if needed > self.resp_cap:
            raise RingError(f"{len(body)}-byte message is over the ring's {self.max_body}-byte limit")
        tail = self.resp_tail
        waited = None
        while self.resp_cap - (tail - self.words[RESPONSE_HEAD]) < needed:
            if waited is None:
                waited = time.monotonic()
            elif time.monotonic() - waited > FULL_WAIT_S:
                raise RingError("response ring stayed full")
            os.eventfd_write(RESPONSE_BELL_FD, 1)
            time.sleep(0.0005)
        self._write(tail, _RECORD.pack(len(body), kind, 0, ident))
        if body:
            self._write(tail + RECORD_HEADER, body)
        self.resp_tail = tail + needed
        # Publish: the record bytes above are stored before this word (TSO).
        self.words[RESPONSE_TAIL] = self.resp_tail
        os.eventfd_write(RESPONSE_BELL_FD, 1)


def support():
    """lambda_support.py beside this file, loaded on first use: what only
    some functions need runs only when one does. `code_of` is start.py's
    (this file runs in its namespace): the daemon's bytecode, else the
    source compiled."""
    module = sys.modules.get("_sprout_lambda_support")
    if module is None:
        path = RUNTIME_DIR + "/lambda_support.py"
        code = code_of(path)  # noqa: F821 (start.py's)
        module = type(sys)("_sprout_lambda_support")
        module.__file__ = path
        exec(code, module.__dict__)
        # Only once complete: a thread racing this one loads its own copy
        # rather than seeing a half-run module.
        sys.modules[module.__name__] = module
    return module


def error_body(error_type, message, stack_trace, request_id=""):
    """An ERROR or INIT_ERROR body, as Lambda's runtime writes it (and logs
    it: Lambda prints every error it reports)."""
    error = {"errorMessage": message, "errorType": error_type, "requestId": request_id, "stackTrace": stack_trace}
    support().log_error(error)
    return json_dumps(error).encode()


def exception_body(exc, request_id=""):
    """The error body of an exception raised in the function's code."""
    return error_body(type(exc).__name__, str(exc), support().stack_trace(exc), request_id)


class InvokeError(Exception):
    """A nested call (`context.invoke`) failed.

    `kind` is the daemon's error kind (`NotFound`, `FunctionError`,
    `Throttled`, `BadRequest`, ...), `error_type` the callee's own error
    type for a `FunctionError` (e.g. `ValueError`), `invocation_id` the
    callee's invocation id (0 if the call was refused before it got one).
    """

    def __init__(self, kind, message, error_type=None, invocation_id=0):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.error_type = error_type
        self.invocation_id = invocation_id


class Context:
    """What a handler gets as its second argument, Lambda's context object.

    Function-wide fields are class attributes, set once at assignment from
    Lambda's environment variables; an invocation only fills the slots.
    Beyond Lambda's: `request_id` (= aws_request_id), `affinity_key` (the
    invocation's affinity key, or None), `trace_id` (32 hex digits),
    `parent_id` (the caller's request id, a client's traceparent span id,
    or None) and `depth` (0 for a client invocation) place it in its call
    tree; `invoke` and `invoke_async` call other functions.
    """

    __slots__ = ("aws_request_id", "request_id", "client_context", "_identity")
    __slots__ += ("affinity_key", "trace_id", "parent_id", "depth", "_deadline_ms")

    function_name = ""
    function_version = ""
    memory_limit_in_mb = ""
    invoked_function_arn = ""
    log_group_name = None
    log_stream_name = None
    tenant_id = None
    _ring = None

    def __init__(self, request_id, deadline_ms, meta):
        self.aws_request_id = request_id
        self.request_id = request_id
        self.client_context = self._identity = None
        if "client_context" in meta or "cognito_identity" in meta:
            self._caller(meta)
        self.affinity_key = meta.get("affinity_key")
        self.trace_id = meta.get("trace_id")
        self.parent_id = meta.get("parent_id")
        self.depth = meta.get("depth") or 0
        self._deadline_ms = deadline_ms

    def _caller(self, meta):
        """What a mobile client sent along (rare: built only then);
        ValueError if it is not JSON."""
        self.client_context, self._identity = support().caller_context(meta, json_loads)

    @property
    def identity(self):
        """Lambda's CognitoIdentity; its fields are None without one."""
        if self._identity is None:
            self._identity = support().CognitoIdentity({})
        return self._identity

    def get_remaining_time_in_millis(self):
        return max(0, int(self._deadline_ms - time.time() * 1000))

    def __repr__(self):
        return support().context_repr(self)

    def log(self, msg):
        support().write_record(str(msg))

    def invoke(self, name, event=None):
        """Invoke function `name` with `event` and wait: its decoded result,
        or InvokeError."""
        meta, result = self._call(name, event, False)
        return json_loads(result) if result else None

    def invoke_async(self, name, event=None):
        """Start function `name` with `event` and do not wait for it: the
        callee's invocation id, or InvokeError if it was refused."""
        meta, _ = self._call(name, event, True)
        return meta.get("invocation_id", 0)

    def _call(self, name, event, detached):
        meta, result = Context._ring.call(str(name), json_dumps(event).encode(), detached)
        if not meta.get("ok"):
            error = meta.get("error") or {}
            raise InvokeError(
                error.get("kind", "Internal"),
                error.get("message", ""),
                error.get("error_type"),
                meta.get("invocation_id", 0),
            )
        return meta, result


def xray_trace_id(ident, meta):
    """`_X_AMZN_TRACE_ID` for an invocation: the daemon's, or (from a
    daemon that sends none) one made as the daemon makes it, from sprout's
    trace id and the invocation's id; None without a trace id."""
    given = meta.get("xray_trace_id")
    trace = meta.get("trace_id")
    if given or not trace:
        return given
    return f"Root=1-{trace[:8]}-{trace[8:]};Parent={ident:016x};Sampled=1"


# The running invocation's request id, for log lines ("" between them).
_request_id = ""


class LambdaLogging:
    """Sets up the root logger as Lambda's runtime does, once the function
    imports `logging`: importing it costs ~9 ms, which a function that never
    logs should not pay at start. A meta path finder that hands out
    `logging` with a loader that configures it right after it loads."""

    @staticmethod
    def install():
        if "logging" in sys.modules:  # something imported it already
            LambdaLogging.configure(sys.modules["logging"])
        else:
            sys.meta_path.insert(0, LambdaLogging)

    @staticmethod
    def configure(logging):
        env = os.environ
        log_format, log_level = env.get("AWS_LAMBDA_LOG_FORMAT"), env.get("AWS_LAMBDA_LOG_LEVEL")
        support().setup_logging(logging, lambda: _request_id, log_format, log_level)

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name != "logging":
            return None
        sys.meta_path.remove(LambdaLogging)
        for finder in sys.meta_path:
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                spec.loader = ConfigureAfterLoad(spec.loader)
                return spec
        return None


class ConfigureAfterLoad:
    """`logging`'s own loader, then LambdaLogging.configure."""

    def __init__(self, loader):
        self.loader = loader

    def __getattr__(self, name):
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        LambdaLogging.configure(module)


class InitError(Exception):
    def __init__(self, body):
        super().__init__()
        self.body = body


def receive_assignment():
    """The assignment JSON from the control socket. A code dir fd, if the
    daemon attached one, is closed: the code is at LAMBDA_TASK_ROOT."""
    # `_socket`, not `socket`: the latter imports `enum` and `selectors`.
    sock = _socket.socket(fileno=CONTROL_FD)
    fds = array.array("i")
    try:
        msg, ancdata, flags, _ = sock.recvmsg(
            MAX_ASSIGNMENT, _socket.CMSG_SPACE(4 * fds.itemsize), _socket.MSG_CMSG_CLOEXEC
        )
    finally:
        sock.detach()
    for level, kind, data in ancdata:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    for fd in fds:
        os.close(fd)
    if not msg and not fds:
        raise EOFError("control socket closed before an assignment came")
    if flags & (_socket.MSG_TRUNC | _socket.MSG_CTRUNC) or len(fds) > 1:
        raise RingError(f"bad assignment: {len(fds)} fds, flags {flags:#x}")
    return json_loads(msg)


def load_handler(assignment):
    """Apply the function's environment, enter its code and import its
    handler, as Lambda's runtime does (same sys.path, messages, errors)."""
    env = os.environ
    for key, value in (assignment.get("env") or {}).items():
        if env.get(key) != value:  # the sandbox started with Lambda's fixed ones
            env[key] = value
    env["SPROUT_FUNCTION"] = str(assignment["function"])
    env["SPROUT_FUNCTION_VERSION"] = str(assignment["version"])
    env["SPROUT_MEMORY_MB"] = str(assignment["memory_mb"])
    env["SPROUT_TIMEOUT_MS"] = str(assignment["timeout_ms"])
    Context.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME", env["SPROUT_FUNCTION"])
    Context.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION", env["SPROUT_FUNCTION_VERSION"])
    Context.memory_limit_in_mb = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", env["SPROUT_MEMORY_MB"])
    Context.log_group_name = env.get("AWS_LAMBDA_LOG_GROUP_NAME")
    Context.log_stream_name = env.get("AWS_LAMBDA_LOG_STREAM_NAME")
    region = env.get("AWS_REGION", "us-east-1")
    Context.invoked_function_arn = f"arn:aws:lambda:{region}:000000000000:function:{Context.function_name}"

    task_root = env.get("LAMBDA_TASK_ROOT", "/var/task")
    python = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    sys.path[:0] = [task_root, f"/opt/python/lib/{python}/site-packages", "/opt/python"]
    LambdaLogging.install()
    try:
        os.chdir(task_root)
        return import_handler(assignment.get("handler") or "")
    except InitError:
        raise
    except Exception as exc:  # the module's own init code raised
        raise InitError(exception_body(exc)) from None


def import_handler(handler):
    """The function named by `handler` (`module.func`, `pkg/mod.func` or
    `pkg.mod.func`), or InitError with Lambda's errorType and message."""
    try:
        modname, fname = handler.rsplit(".", 1)
    except ValueError as exc:
        raise InitError(error_body("Runtime.MalformedHandlerName", f"Bad handler '{handler}': {exc}", [])) from None
    if modname.split(".")[0] in sys.builtin_module_names:
        message = f"Cannot use built-in module {modname} as a handler module"
        raise InitError(error_body("Runtime.BuiltInModuleConflict", message, []))
    try:
        module = importlib.import_module(modname.replace("/", "."))
    except ImportError as exc:
        message = f"Unable to import module '{modname}': {exc}"
        raise InitError(error_body("Runtime.ImportModuleError", message, [])) from None
    except SyntaxError as exc:
        message = f"Syntax error in module '{modname}': {exc}"
        trace = support().syntax_error_trace(exc)
        raise InitError(error_body("Runtime.UserCodeSyntaxError", message, trace)) from None
    try:
        return getattr(module, fname)
    except AttributeError:
        message = f"Handler '{fname}' missing on module '{modname}'"
        raise InitError(error_body("Runtime.HandlerNotFound", message, [])) from None


def serve(ring, handler, timeout_ms):
    """The warm loop: one invocation at a time, forever."""
    global _request_id
    loads, dumps = json_loads, json_dumps
    unpack_u32 = _U32.unpack_from
    pop, push, wait = ring.pop, ring.push, ring.wait
    max_body = ring.max_body
    environ = os.environ
    while True:
        record = pop()
        if record is None:
            _request_id = ""
            wait()
            continue
        kind, ident, body = record
        if kind != INVOKE:
            raise RingError(f"unexpected message type {kind} on the request ring")
        (meta_len,) = unpack_u32(body, 0)
        meta = loads(body[4 : 4 + meta_len]) if meta_len else {}
        payload = body[4 + meta_len :]
        deadline_ms = meta.get("deadline_ms") or time.time() * 1000 + timeout_ms
        _request_id = request_id = str(ident)
        trace = xray_trace_id(ident, meta)
        if trace:
            environ["_X_AMZN_TRACE_ID"] = trace
        else:
            environ.pop("_X_AMZN_TRACE_ID", None)
        try:
            context = Context(request_id, deadline_ms, meta)
        except ValueError as exc:  # a client context or identity not JSON
            push(ERROR, ident, error_body("Runtime.LambdaContextUnmarshalError", str(exc), [], request_id))
            continue
        try:
            event = loads(payload) if payload else None
        except ValueError as exc:
            message = f"Unable to unmarshal input: {exc}"
            push(ERROR, ident, error_body("Runtime.UnmarshalError", message, [], request_id))
            continue
        try:
            result = handler(event, context)
        except Exception as exc:
            push(ERROR, ident, exception_body(exc, request_id))
            continue
        if isinstance(result, bytes):  # Lambda passes bytes through as they are
            out = result
        else:
            try:
                out = dumps(result).encode()
            except (TypeError, ValueError, OverflowError) as exc:
                message = f"Unable to marshal response: {exc}"
                push(ERROR, ident, error_body("Runtime.MarshalError", message, [], request_id))
                continue
        if len(out) > max_body:
            message = f"response of {len(out)} bytes is over the {max_body}-byte limit"
            push(ERROR, ident, error_body("Runtime.ResponseTooLarge", message, [], request_id))
            continue
        push(RESULT, ident, out)


def main():
    sys.dont_write_bytecode = True  # the code dir is read-only
    sys.stdout.reconfigure(line_buffering=True)
    ring = Ring()
    ring.push(READY, 0)
    try:
        assignment = receive_assignment()
    except EOFError:
        return 0
    try:
        handler = load_handler(assignment)
    except InitError as err:
        ring.push(INIT_ERROR, 0, err.body[: ring.max_body])
        return 1
    ring.push(INIT_OK, 0)
    Context._ring = ring
    serve(ring, handler, int(assignment.get("timeout_ms") or 0))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RingError as err:
        print(f"sprout runtime: {err}", file=sys.stderr)
        sys.exit(2)
