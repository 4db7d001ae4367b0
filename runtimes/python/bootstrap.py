"""sprout's Python runtime: runs `handler(event, context)` functions.

Started inside a sandbox as `/usr/bin/python3 -I /opt/sprout/runtime/bootstrap.py`
with the ring memfd at fd 3, the request doorbell at fd 4, the response
doorbell at fd 5 and the control socket at fd 6 (runtimes/README.md is the
contract this file implements). Pure standard library.

Life: map the ring, push READY; receive the assignment on fd 6; import the
handler and push INIT_OK (or INIT_ERROR and exit); then forever: wait on the
request doorbell, pop each INVOKE, run the handler, push RESULT or ERROR.

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
    raise TypeError(f"Object of type {value.__class__.__name__} is not JSON serializable")


def json_dumps(value):
    """json_dumps(value): ASCII, ", " and ": " separators, NaN allowed."""
    encode = _json.make_encoder(
        {}, _json_unserializable, _json.encode_basestring_ascii, None, ": ", ", ", False, False, True
    )
    return "".join(encode(value, 0))


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


def error_body(error_type, message, stack_trace):
    return json_dumps({"errorType": error_type, "errorMessage": message, "stackTrace": stack_trace}).encode()


def exception_body(exc, skip_frames=0, error_type=None):
    """ERROR body for an exception, its traceback minus our own frames."""
    tb = exc.__traceback__
    for _ in range(skip_frames):
        if tb is not None:
            tb = tb.tb_next
    import traceback  # only on errors: it is slow to import

    stack = traceback.format_list(traceback.extract_tb(tb))
    return error_body(error_type or type(exc).__name__, str(exc), stack)


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
    """What a handler gets as its second argument, like AWS Lambda's.

    Function-wide fields are class attributes, set once at assignment; an
    invocation only fills the slots. `affinity_key` is the invocation's
    affinity key, or None; `trace_id` (32 hex digits) and `parent_id` (the
    caller's request id, a client's traceparent span id, or None) place it
    in its call tree, and `depth` is 0 for a client invocation.
    """

    __slots__ = ("aws_request_id", "request_id", "affinity_key", "trace_id", "parent_id", "depth", "_deadline_ms")

    function_name = ""
    function_version = ""
    memory_limit_in_mb = ""
    invoked_function_arn = ""
    log_group_name = ""
    log_stream_name = ""
    identity = None
    client_context = None
    _ring = None

    def __init__(self, request_id, deadline_ms, meta):
        self.aws_request_id = request_id
        self.request_id = request_id
        self.affinity_key = meta.get("affinity_key")
        self.trace_id = meta.get("trace_id")
        self.parent_id = meta.get("parent_id")
        self.depth = meta.get("depth") or 0
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self):
        return max(0, int(self._deadline_ms - time.time() * 1000))

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


class InitError(Exception):
    def __init__(self, body):
        super().__init__()
        self.body = body


def receive_assignment():
    """The assignment JSON and the code dir fd from the control socket."""
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
    if not msg and not fds:
        raise EOFError("control socket closed before an assignment came")
    if flags & (_socket.MSG_TRUNC | _socket.MSG_CTRUNC) or len(fds) != 1:
        raise RingError(f"bad assignment: {len(fds)} fds, flags {flags:#x}")
    return json_loads(msg), fds[0]


def load_handler(assignment, code_fd):
    """Apply the function's environment and import its handler."""
    for key, value in (assignment.get("env") or {}).items():
        os.environ[key] = value
    os.environ["SPROUT_FUNCTION"] = Context.function_name = str(assignment["function"])
    os.environ["SPROUT_FUNCTION_VERSION"] = Context.function_version = str(assignment["version"])
    os.environ["SPROUT_MEMORY_MB"] = Context.memory_limit_in_mb = str(assignment["memory_mb"])
    os.environ["SPROUT_TIMEOUT_MS"] = str(assignment["timeout_ms"])
    Context.invoked_function_arn = f"sprout:function:{Context.function_name}:{Context.function_version}"
    sys.path.insert(0, f"/proc/self/fd/{code_fd}")

    handler = assignment.get("handler") or ""
    module_name, _, func_name = handler.rpartition(".")
    if not module_name or not func_name:
        raise InitError(error_body("Runtime.MalformedHandlerName", f"bad handler '{handler}': expected module.function", []))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InitError(
            exception_body(exc, error_type="Runtime.ImportModuleError")
            if exc.name != module_name
            else error_body("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}", [])
        ) from None
    except SyntaxError as exc:
        import traceback

        lines = traceback.format_exception_only(type(exc), exc)
        raise InitError(error_body("Runtime.UserCodeSyntaxError", str(exc), lines)) from None
    except Exception as exc:  # the module's own init code raised
        raise InitError(exception_body(exc)) from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise InitError(
            error_body("Runtime.HandlerNotFound", f"Handler '{func_name}' missing on module '{module_name}'", [])
        )
    return func


def serve(ring, handler, timeout_ms):
    """The warm loop: one invocation at a time, forever."""
    loads, dumps = json_loads, json_dumps
    unpack_u32 = _U32.unpack_from
    pop, push, wait = ring.pop, ring.push, ring.wait
    max_body = ring.max_body
    while True:
        record = pop()
        if record is None:
            wait()
            continue
        kind, ident, body = record
        if kind != INVOKE:
            raise RingError(f"unexpected message type {kind} on the request ring")
        (meta_len,) = unpack_u32(body, 0)
        meta = loads(body[4 : 4 + meta_len]) if meta_len else {}
        payload = body[4 + meta_len :]
        deadline_ms = meta.get("deadline_ms") or time.time() * 1000 + timeout_ms
        request_id = str(ident)
        try:
            event = loads(payload) if payload else None
        except ValueError as exc:
            push(ERROR, ident, error_body("Runtime.UnmarshalError", f"payload is not JSON: {exc}", []))
            continue
        try:
            result = handler(event, Context(request_id, deadline_ms, meta))
        except Exception as exc:
            push(ERROR, ident, exception_body(exc, skip_frames=1))
            continue
        try:
            out = dumps(result).encode()
        except (TypeError, ValueError, OverflowError) as exc:
            push(ERROR, ident, error_body("Runtime.MarshalError", f"Unable to marshal response: {exc}", []))
            continue
        if len(out) > max_body:
            message = f"response of {len(out)} bytes is over the {max_body}-byte limit"
            push(ERROR, ident, error_body("Runtime.ResponseTooLarge", message, []))
            continue
        push(RESULT, ident, out)


def main():
    sys.dont_write_bytecode = True  # the code dir is read-only
    sys.stdout.reconfigure(line_buffering=True)
    ring = Ring()
    ring.push(READY, 0)
    try:
        assignment, code_fd = receive_assignment()
    except EOFError:
        return 0
    try:
        handler = load_handler(assignment, code_fd)
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
