"""The grader's side of the tests: a proxy for the learner's kernel, the test registry, verdicts.

A problem set's tests live in ``exercises/grader/<set>.py``, outside the release and outside the
learner's sandbox (the sandbox hides the course directory). Each test is a function of one
argument, the ``Learner`` proxy, registered under the grade id of its test cell::

    @test("test_gd_fixed_hidden")
    def _(learner):
        theta, losses = learner.call("gradient_descent", p.value, p.grad, theta0, lr, 40)
        assert np.linalg.norm(theta - want) <= 1e-9 * np.linalg.norm(want)

``learner.call`` sends the function's name and the arguments as data to the kernel, which calls
the learner's function and sends the result back as data (see ``channel.py``); the assertion runs
here, with the grader's numpy. A test fails with a *kind*: the class name of the exception, kept
only when it is in ``KINDS`` (``"Error"`` otherwise), or one of the grader's own kinds
(``Timeout``, ``KernelDied``, ``NotData``, ``Missing``). Hidden tests report the kind alone; a visible
test may also report its own assertion message (it is written to be shown).
"""

import importlib.util
import os
import sys
import time
import traceback

import numpy as np

import channel
from channel import Attr, Global, Handle, Lib, Logged, NotData, Table  # noqa: F401  (the test files' vocabulary)

KINDS = frozenset({
    "AssertionError", "ValueError", "TypeError", "IndexError", "KeyError", "NameError",
    "AttributeError", "ZeroDivisionError", "NotImplementedError", "RuntimeError",
    "FloatingPointError", "OverflowError", "RecursionError", "MemoryError", "UnboundLocalError",
    "StopIteration", "LinAlgError", "Timeout", "KernelDied", "NotData", "Missing", "Error",
})
CALL_TIMEOUT = 30.0


class LearnerError(Exception):
    """The learner's function raised; ``kind`` is its class name (from KINDS, else ``Error``)."""

    def __init__(self, kind):
        super().__init__(kind)
        self.kind = kind if kind in KINDS else "Error"


class GraderFailure(Exception):
    """The call could not be made: ``Timeout``, ``KernelDied`` or ``NotData``."""

    def __init__(self, kind):
        super().__init__(kind)
        self.kind = kind


class Learner:
    """Calls into the learner's kernel through ``send(code, timeout) -> [payload text]``."""

    def __init__(self, send, call_timeout=CALL_TIMEOUT):
        self._send = send
        self.call_timeout = call_timeout

    def _request(self, fn, args, kwargs, timeout=None, **flags):
        req = {"fn": channel.request(fn), "args": channel.request(list(args)),
               "kwargs": channel.request(dict(kwargs))["__dict__"], **flags}
        code = f"__steplab_channel__.serve({channel.json.dumps(req)!r})"
        payloads = self._send(code, timeout or self.call_timeout)
        if not payloads:
            raise GraderFailure("NotData")
        try:
            reply = channel.json.loads(payloads[-1])
            if not isinstance(reply, dict) or len(reply) != 1:
                raise NotData("reply")
            if "error" in reply:
                raise LearnerError(str(reply["error"]))
            return channel.decode(reply["ok"], strict=True)
        except (NotData, ValueError, TypeError, KeyError) as exc:
            if isinstance(exc, LearnerError):
                raise
            raise GraderFailure("NotData") from None

    def call(self, fn, *args, timeout=None, **kwargs):
        """The learner's ``fn(*args, **kwargs)`` (``fn`` a name in the notebook or a handle), as data;
        a result that is not data comes back as a ``Handle``."""
        return self._request(fn, args, kwargs, timeout)

    def data(self, fn, *args, timeout=None, **kwargs):
        """As ``call``, but the whole result must be data (else the test fails with NotData)."""
        return self._request(fn, args, kwargs, timeout, data=True)

    def repeat(self, n, fn, *args, timeout=None, **kwargs):
        """``[fn(*args, **kwargs) for _ in range(n)]`` in one round trip (a shared generator advances)."""
        return self._request(fn, args, kwargs, timeout, repeat=int(n), data=True)

    def traced(self, parts, fn, *args, timeout=None, **kwargs):
        """``(result, the steplab files among parts that fn called into directly)``. The record is
        made in the learner's kernel, so a learner can falsify it: it enforces an instruction,
        not a grade that matters for security."""
        return self._request(fn, args, kwargs, timeout, trace=list(parts))

    def new(self, qualname, *args, **kwargs):
        """A library object built in the kernel and kept there (a problem, a generator): a Handle."""
        return self.keep(Lib(qualname, *args, **kwargs))

    def keep(self, spec):
        """Build ``spec`` (a ``Lib``, ``Logged`` or ``Table``) in the kernel and keep it there: a Handle."""
        return self._request(None, [spec], {}, handle=True)

    def value(self, handle):
        """The current value of a kernel-side object, as data."""
        return self._request(None, [handle], {}, data=True)

    def get(self, name):
        """The value of a notebook variable, as data."""
        return self._request(None, [Global(name)], {}, data=True)


def expect_error(learner, kind, fn, *args, **kwargs):
    """Assert that the learner's fn raises an exception of class ``kind``."""
    try:
        learner.call(fn, *args, **kwargs)
    except LearnerError as exc:
        assert exc.kind == kind, f"{fn} raised {exc.kind}, not {kind}"
        return
    raise AssertionError(f"{fn} must raise {kind}")


# ------------------------------------------------------------------ registry

_REGISTRY = {}


def test(grade_id, visible=False):
    """Register a grader test for the test cell ``grade_id``."""
    def register(fn):
        _REGISTRY[grade_id] = (fn, visible)
        return fn
    return register


def load(path):
    """{grade_id: (function, visible)} from one set's grader file."""
    _REGISTRY.clear()
    spec = importlib.util.spec_from_file_location(f"grader_tests_{os.path.basename(path)[:-3]}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    found = dict(_REGISTRY)
    _REGISTRY.clear()
    return found


def run(tests, learner, grade_ids, deadline=None):
    """{grade_id: (passed, kind, message)} for every grade id, in order; a missing test fails."""
    verdicts = {}
    for gid in grade_ids:
        if gid not in tests:
            verdicts[gid] = (False, "Missing", "")
            continue
        if deadline is not None and time.monotonic() > deadline:
            verdicts[gid] = (False, "Timeout", "")
            continue
        fn, visible = tests[gid]
        try:
            with np.errstate(all="ignore"):
                fn(learner)
            verdicts[gid] = (True, "", "")
            continue
        except (LearnerError, GraderFailure) as exc:
            verdicts[gid] = (False, exc.kind, "")
            _debug(gid)
        except AssertionError as exc:
            verdicts[gid] = (False, "AssertionError", str(exc)[:500] if visible else "")
            _debug(gid)
        except Exception as exc:  # noqa: BLE001  (bad data from the kernel: a shape, a type)
            kind = type(exc).__name__
            verdicts[gid] = (False, kind if kind in KINDS else "Error", "")
            _debug(gid)
    return verdicts


def _debug(grade_id):
    """With STEPLAB_GRADER_DEBUG set, the failure's traceback on the instructor's terminal (never a notebook)."""
    if os.environ.get("STEPLAB_GRADER_DEBUG"):
        print(f"grader test {grade_id} failed:", file=sys.stderr)
        traceback.print_exc()


def outputs(grade_id, verdict, hidden):
    """The outputs the test cell gets: nbgrader scores a cell with an error output zero, else full."""
    passed, kind, message = verdict
    kind = kind if kind in KINDS else "Error"
    if passed:
        return [{"output_type": "stream", "name": "stdout", "text": "passed (checked by the grader)\n"}]
    what = "a hidden test" if hidden else "a test"
    line = f"{kind}: {what} in {grade_id} failed" + (f": {message}" if message and not hidden else "")
    return [{"output_type": "error", "ename": kind, "evalue": "",
             "traceback": [line + (" (hidden tests are not shown)" if hidden else "")]}]
