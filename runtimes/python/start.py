"""Starts sprout's Python runtime, bootstrap.py beside this file.

Python compiles a script on every start, and compiling bootstrap.py costs
more than the rest of the runtime's start-up. The daemon compiles it once
when it starts (bootstrap.pyc, with the runtime's own paths in its frames);
this runs that bytecode, or bootstrap.py itself when there is none or it is
another Python's. Either way bootstrap runs as `__main__`, with `__file__`
its source's path, in this file's namespace: it loads lambda_support.py
with `code_of` too.
"""

import _frozen_importlib_external
import marshal
import sys


def code_of(source):
    """The code of `source` (NAME.py): NAME.pyc beside it if this Python
    wrote it, else compiled from the source."""
    try:
        with open(source + "c", "rb") as compiled:
            data = compiled.read()
        if data[:4] == _frozen_importlib_external.MAGIC_NUMBER:
            return marshal.loads(memoryview(data)[16:])
    except (OSError, EOFError, ValueError, TypeError):
        pass  # absent or damaged: the source is the truth
    with open(source, encoding="utf-8") as text:
        return compile(text.read(), source, "exec")


def run():
    source = __file__.rpartition("/")[0] + "/bootstrap.py"
    code = code_of(source)
    namespace = sys.modules["__main__"].__dict__
    namespace["__file__"] = source
    exec(code, namespace)


run()
