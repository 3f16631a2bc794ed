"""The narrow channel between the grader and a learner's kernel: data in, data out.

The grader never runs test code in the learner's kernel. It sends this file's source to the
kernel once (after the learner's notebook has run), then one request per call: the name of a
learner's function and its arguments, encoded as data. The kernel side (``Channel``) decodes
them, calls the function, and publishes the result, encoded as data, as one display message of
type ``MIME``. The grader decodes it with ``decode(..., strict=True)``, which accepts nothing but
JSON numbers, strings, lists, dicts, tuples and numpy arrays of plain dtypes (``DTYPES``)
rebuilt from raw bytes: nothing callable, no pickle.

A value that is not data (a learner's ``GradientTransformation``, a state ``NamedTuple``, a
closure) stays in the kernel, in ``Channel.objects``, and crosses as an opaque handle
``{"__handle__": "h3"}``; the grader can pass the handle back as an argument, call it, or call an
attribute of it. The grader also asks the kernel to build library objects from data
(``{"__call__": ["steplab.problems.Quadratic", args, kwargs]}``) so that a learner's function can
receive a problem or a generator. Whatever the kernel answers, the grader only compares numbers.
"""

import base64
import importlib
import json
import math
import sys

import numpy as np

MIME = "application/x-steplab-channel+json"
DTYPES = {"float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint8", "bool", "complex128"}
MAX_BYTES = 32 * 2**20
MAX_DEPTH = 40
CALL_PREFIXES = ("steplab.", "numpy.")


class NotData(Exception):
    """A value that cannot cross the channel."""


def encode(x, keep=None, depth=0):
    """A JSON-able form of ``x``; what is not data becomes ``keep(x)``'s handle, or NotData."""
    if depth > MAX_DEPTH:
        raise NotData("nested too deeply")
    if x is None or isinstance(x, (bool, str)):
        return x
    if type(x) is int:
        return x
    if type(x) is float:
        return x if math.isfinite(x) else {"__float__": repr(x)}
    if isinstance(x, (np.ndarray, np.generic)) and type(x).__module__ == "numpy":
        a = np.asarray(x)
        if a.dtype.name in DTYPES:
            a = np.array(a, order="C", copy=True)  # ascontiguousarray would make a 0-d array 1-d
            return {"__nd__": [a.dtype.name, list(a.shape), base64.b64encode(a.tobytes()).decode("ascii"),
                               isinstance(x, np.generic)]}
    elif type(x) is tuple or type(x) is list:
        items = [encode(v, keep, depth + 1) for v in x]
        return {"__tuple__": items} if type(x) is tuple else items
    elif type(x) is dict and all(type(k) is str for k in x):
        return {"__dict__": {k: encode(v, keep, depth + 1) for k, v in x.items()}}
    elif type(x) is dict:
        return {"__items__": [[encode(k, None, depth + 1), encode(v, keep, depth + 1)] for k, v in x.items()]}
    if keep is None:
        raise NotData(type(x).__name__)
    return {"__handle__": keep(x)}


def decode(x, resolve=None, strict=True, depth=0):
    """The value that ``encode`` encoded. ``strict`` (the grader's side) refuses every marker but
    arrays, tuples, dicts and handles; the kernel side passes ``resolve`` for handles and calls."""
    if depth > MAX_DEPTH:
        raise NotData("nested too deeply")
    if x is None or type(x) in (bool, str, int, float):
        return x
    if type(x) is list:
        return [decode(v, resolve, strict, depth + 1) for v in x]
    if type(x) is not dict or len(x) != 1:
        raise NotData("malformed")
    (tag, body), = x.items()
    if tag == "__nd__":
        dtype, shape, data, scalar = body
        if dtype not in DTYPES or not all(type(n) is int and n >= 0 for n in shape):
            raise NotData("array")
        raw = base64.b64decode(data, validate=True)
        a = np.frombuffer(raw, dtype=np.dtype(dtype)).reshape(shape).copy()
        return a[()] if scalar else a
    if tag == "__float__":
        if body not in ("nan", "inf", "-inf"):
            raise NotData("float")
        return float(body)
    if tag == "__tuple__" and type(body) is list:
        return tuple(decode(v, resolve, strict, depth + 1) for v in body)
    if tag == "__dict__" and type(body) is dict:
        return {str(k): decode(v, resolve, strict, depth + 1) for k, v in body.items()}
    if tag == "__items__" and type(body) is list:
        pairs = [decode(kv, resolve, strict, depth + 1) for kv in body]
        if not all(isinstance(kv, list) and len(kv) == 2 for kv in pairs):
            raise NotData("items")
        return {_key(k): v for k, v in pairs}
    if tag == "__handle__" and type(body) is str:
        return Handle(body) if resolve is None else resolve(x)
    if not strict and resolve is not None and tag in ("__call__", "__attr__", "__global__", "__logged__", "__table__"):
        return resolve(x)
    raise NotData(f"unexpected {tag!r}")


def _key(k):
    if isinstance(k, np.ndarray):
        k = k.item()
    if type(k) not in (int, float, str, bool) and k is not None:
        raise NotData("key")
    return k


class Handle:
    """The grader's name for an object that stays in the kernel; ``h.init`` names its attribute."""

    def __init__(self, ident):
        self.ident = ident

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return Attr(self, name)

    def __repr__(self):
        return f"Handle({self.ident})"


class Global:
    """A variable of the learner's notebook, read by name."""

    def __init__(self, name):
        self.name = name


class _Built:
    """A value built in the kernel from the grader's description; ``x.name`` names its attribute."""

    _fields = ()

    def __getattr__(self, name):
        if name.startswith("__") or name in self._fields:
            raise AttributeError(name)
        return Attr(self, name)


class Lib(_Built):
    """A library call the kernel makes to build an argument: ``Lib("steplab.problems.Quadratic", [1.0, 2.0])``."""

    _fields = ("qualname", "args", "kwargs")

    def __init__(self, qualname, *args, **kwargs):
        if not qualname.startswith(CALL_PREFIXES):
            raise ValueError(f"only steplab and numpy may be called, not {qualname}")
        self.qualname, self.args, self.kwargs = qualname, args, kwargs


class Logged(_Built):
    """A problem wrapped in the kernel so that every gradient it computes is logged (``.log``) and
    ``.evaluate(theta)`` returns ``value(theta)`` noting the gradient count (``.evaluations``)."""

    _fields = ("problem",)

    def __init__(self, problem):
        self.problem = problem


class Table(_Built):
    """A function in the kernel that returns ``results[arg]`` for its one argument and notes each call."""

    _fields = ("results",)

    def __init__(self, results):
        self.results = results


class Attr:
    """An attribute of a kernel-side object (a handle's method, a problem's ``grad``)."""

    def __init__(self, owner, name):
        self.owner, self.name = owner, name


def request(x):
    """Encode the grader's side of a call: data, handles and library calls."""
    if isinstance(x, Handle):
        return {"__handle__": x.ident}
    if isinstance(x, Lib):
        return {"__call__": [x.qualname, [request(a) for a in x.args], {k: request(v) for k, v in x.kwargs.items()}]}
    if isinstance(x, Attr):
        return {"__attr__": [request(x.owner), x.name]}
    if isinstance(x, Global):
        return {"__global__": x.name}
    if isinstance(x, Logged):
        return {"__logged__": request(x.problem)}
    if isinstance(x, Table):
        return {"__table__": request(x.results)}
    if type(x) is tuple:
        return {"__tuple__": [request(v) for v in x]}
    if type(x) is list:
        return [request(v) for v in x]
    if type(x) is dict and all(type(k) is str for k in x):
        return {"__dict__": {k: request(v) for k, v in x.items()}}
    if type(x) is dict:
        return {"__items__": [[encode(k), request(v)] for k, v in x.items()]}
    return encode(x)


# ------------------------------------------------------------------ kernel side


def _identity(x):
    return x


class Channel:
    """Runs in the learner's kernel: serves the grader's requests on the notebook's namespace."""

    def __init__(self, namespace):
        self.namespace = namespace
        self.objects = {}

    def keep(self, obj):
        ident = f"h{len(self.objects)}"
        self.objects[ident] = obj
        return ident

    def resolve(self, spec):
        (tag, body), = spec.items()
        if tag == "__handle__":
            return self.objects[body]
        if tag == "__global__":
            if body not in self.namespace:
                raise NameError(body)
            return self.namespace[body]
        if tag == "__attr__":
            return getattr(decode(body[0], self.resolve, strict=False), body[1])
        if tag == "__logged__":
            return LoggedProblem(decode(body, self.resolve, strict=False))
        if tag == "__table__":
            return TableFunction(decode(body, self.resolve, strict=False))
        qualname, args, kwargs = body
        if not qualname.startswith(CALL_PREFIXES):
            raise NotData(qualname)
        module, _, name = qualname.rpartition(".")
        fn = getattr(importlib.import_module(module), name)
        return fn(*decode(args, self.resolve, strict=False), **decode({"__dict__": kwargs}, self.resolve, strict=False))

    def serve(self, text):
        from IPython.display import publish_display_data

        try:
            req = json.loads(text)
            fn = decode(req["fn"], self.resolve, strict=False)
            if fn is None:  # the identity: build or read a value
                fn = _identity
            elif isinstance(fn, str):
                if fn not in self.namespace:
                    raise NameError(fn)
                fn = self.namespace[fn]
            args = decode(req["args"], self.resolve, strict=False)
            kwargs = decode({"__dict__": req["kwargs"]}, self.resolve, strict=False)
            if req.get("trace"):
                out = self.traced(fn, args, kwargs, req["trace"])
            elif req.get("repeat"):
                out = [fn(*args, **kwargs) for _ in range(int(req["repeat"]))]
            else:
                out = fn(*args, **kwargs)
            if req.get("handle"):
                reply = {"ok": {"__handle__": self.keep(out)}}
            else:
                reply = {"ok": encode(out, keep=None if req.get("data") else self.keep)}
        except BaseException as exc:  # noqa: BLE001  (the learner's error is the grader's to judge)
            reply = {"error": type(exc).__name__}
        text = json.dumps(reply)
        if len(text) > MAX_BYTES:
            text = json.dumps({"error": "ResultTooLarge"})
        publish_display_data({MIME: text})

    @staticmethod
    def traced(fn, args, kwargs, parts):
        """``(fn(*args, **kwargs), the steplab files among parts it called into directly)``.

        A part is a file or folder under ``steplab/`` (``"run.py"``, ``"optim"``) or one function
        of a file (``"optim/transforms.py:scale_by_adam"``)."""
        hits = set()

        def matches(part, name, entry):
            where, _, func = entry.partition(":")
            inside = part == where or part.startswith(where.rstrip("/") + "/")
            return inside and (not func or func == name)

        def profile(frame, event, arg):
            if event != "call":
                return
            here = frame.f_code.co_filename.replace("\\", "/")
            caller = frame.f_back.f_code.co_filename.replace("\\", "/") if frame.f_back else ""
            if "/steplab/" in here and "/steplab/" not in caller:
                part = here.rsplit("/steplab/", 1)[1]
                if any(matches(part, frame.f_code.co_name, entry) for entry in parts):
                    hits.add("steplab/" + part)

        old = sys.getprofile()
        sys.setprofile(profile)
        try:
            out = fn(*args, **kwargs)
        finally:
            sys.setprofile(old)
        return out, sorted(hits)


class LoggedProblem:
    """The kernel side of ``Logged``: the problem's attributes, with gradients logged as (theta, rows)."""

    def __init__(self, problem):
        self._problem, self.log, self.evaluations = problem, [], []

    def __getattr__(self, name):
        return getattr(self._problem, name)

    @property
    def count(self):
        return sum(len(rows) for _, rows in self.log)

    def _note(self, theta, rows):
        self.log.append((np.array(theta, dtype=float), np.atleast_1d(np.array(rows))))

    def grad(self, theta):
        self._note(theta, np.arange(self._problem.n))
        return self._problem.grad(theta)

    def grad_batch(self, theta, idx):
        self._note(theta, idx)
        return self._problem.grad_batch(theta, idx)

    def per_example_grads(self, theta, idx=None):
        self._note(theta, np.arange(self._problem.n) if idx is None else idx)
        return self._problem.per_example_grads(theta, idx)

    def evaluate(self, theta):
        value = float(self._problem.value(theta))
        self.evaluations.append((self.count, value))
        return value


class TableFunction:
    """The kernel side of ``Table``."""

    def __init__(self, results):
        self.results, self.calls = results, []

    def __call__(self, arg):
        self.calls.append(arg)
        return self.results[arg]
