"""What a user's function reads besides its arguments, frozen: when a compiled step may be reused.

A compiled step (TensorFlow's ``tf.function``, ``jax.jit``) runs a callable target once, while it
is traced, and bakes in everything the callable reads besides the logits: ``self.index`` of a
bound method, a closure variable, a global. Reusing that step after the value changed would
explain the old target, with nothing to say so. :func:`state_stamp` freezes those values; the
probe reuses a step only while its stamp is equal (:meth:`kerasxai.probe.Probe.step`).

What the stamp reads: the names the function's code uses (``co_names``, nested code included),
looked up on its instance (a bound method or callable object), its closure, its default
arguments, its module's globals, and the classes and modules it names; helper functions and
methods of the user's own code (not a library's) are followed the same way.

- Scalars, strings, NumPy arrays of up to 4096 values, and lists, tuples and dicts of those are
  compared by value (a list changed in place counts).
- A library's functions, classes and modules are compared by identity (replacing ``ops.mean``
  by another function counts; what Keras does inside it does not).
- Anything else (an object of a user's class reached through another object, a Keras
  ``Variable``, a layer, a tensor, a large array) cannot be checked: the stamp is then equal to
  nothing, and the callable is traced at every call, as a new one would be (correct, slower).

Examples:
    >>> class Scorer:
    ...     def __init__(self, index):
    ...         self.index = index
    ...     def score(self, logits):
    ...         return logits[:, self.index]
    >>> scorer = Scorer(3)
    >>> before = state_stamp(scorer.score)
    >>> state_stamp(scorer.score) == before
    True
    >>> scorer.index = 4
    >>> state_stamp(scorer.score) == before
    False
"""

from __future__ import annotations

import functools
import os
import sys
import sysconfig
import types
import weakref

import numpy as np

_SCALARS = (bool, int, float, complex, str, bytes, type(None), np.generic, np.dtype)
_LIBRARY_ROOTS = tuple(
    os.path.abspath(p) + os.sep
    for p in {sysconfig.get_paths().get("purelib"), sysconfig.get_paths().get("platlib"),
              sysconfig.get_paths().get("stdlib"), sys.base_prefix, sys.prefix,
              os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}  # kerasxai itself
    if p
)
_DEPTH = 4  # objects and helper functions followed at most this deep


class _Unknown(Exception):
    """Something the stamp cannot check."""


class _Never:
    """The stamp of a callable whose state cannot be checked: equal to nothing, itself included."""

    def __eq__(self, other):
        return False

    def __repr__(self):
        return "<state that cannot be checked>"


class _Same:
    """A library's function, class or module, compared by identity (held weakly where it can be)."""

    __slots__ = ("ref", "obj")

    def __init__(self, obj):
        try:
            self.ref, self.obj = weakref.ref(obj), None
        except TypeError:
            self.ref, self.obj = None, obj

    def get(self):
        return self.obj if self.ref is None else self.ref()

    def __eq__(self, other):
        if not isinstance(other, _Same):
            return False
        mine = self.get()
        return mine is not None and mine is other.get()


def state_stamp(fn):
    """A value equal to the next call's stamp exactly when ``fn`` reads the same values (see the module).

    Never raises: a callable whose state cannot be checked gets a stamp equal to nothing.
    """
    try:
        return _Stamper().callable(fn)
    except (_Unknown, RecursionError):
        return _Never()


def _is_library(obj) -> bool:
    """Whether a function, class or module comes from an installed package or the standard library
    (kerasxai included); a function by its code's file (a notebook's, a doctest's: the user's)."""
    code = getattr(obj, "__code__", None)
    if isinstance(code, types.CodeType):
        return os.path.isabs(code.co_filename) and os.path.abspath(code.co_filename).startswith(_LIBRARY_ROOTS)
    if isinstance(obj, types.ModuleType):
        module = obj
    else:
        module = sys.modules.get(getattr(obj, "__module__", None) or "")
    path = getattr(module, "__file__", None)
    if module is None or path is None:  # builtins, or a module without a file (a notebook's __main__ has none)
        return module is not None and getattr(module, "__name__", "") != "__main__"
    return os.path.abspath(path).startswith(_LIBRARY_ROOTS)


class _Stamper:
    def __init__(self):
        self.seen = set()  # ids of the functions and objects being followed (cycles)

    # ---------------------------------------------------------------- callables

    def callable(self, fn, depth: int = 0):
        if isinstance(fn, functools.partial):
            return ("partial", self.callable(fn.func, depth + 1), self.value(fn.args, (), depth + 1),
                    self.value(fn.keywords, (), depth + 1))
        if isinstance(fn, types.MethodType):  # a bound method: its function, and the instance's attributes it names
            if _is_library(fn.__func__):  # a library object's method (layer.call): its state is the library's
                raise _Unknown(fn)
            names = self.names(fn.__func__, depth)
            return ("method", self.function(fn.__func__, depth), self.attributes(fn.__self__, names, depth))
        if isinstance(fn, types.FunctionType):
            return ("function", self.function(fn, depth))
        if isinstance(fn, types.BuiltinFunctionType) or (_is_library(type(fn)) and not hasattr(fn, "__dict__")):
            return ("library", _Same(fn))  # a builtin, a ufunc: no state of its own
        if isinstance(fn, type) and _is_library(fn):
            return ("library", _Same(fn))
        call = getattr(type(fn), "__call__", None)  # a callable object of the user's own class
        if _is_library(type(fn)) or not isinstance(call, types.FunctionType) or _is_library(call):
            raise _Unknown(fn)  # a layer, a model, a library's callable object
        return ("object", self.function(call, depth), self.attributes(fn, self.names(call, depth), depth))

    def function(self, fn, depth: int):
        """A plain function: by identity if a library's, else its closure, defaults and the globals it names."""
        if _is_library(fn):
            return _Same(fn)
        if id(fn) in self.seen:
            return ("again", fn.__qualname__)
        if depth > _DEPTH:
            raise _Unknown(fn)
        self.seen.add(id(fn))
        names = self.names(fn, depth)
        cells = []
        for cell in fn.__closure__ or ():
            try:
                contents = cell.cell_contents
            except ValueError:  # an empty cell
                cells.append(None)
                continue
            cells.append(self.value(contents, names, depth + 1))
        named = tuple((name, self.value(fn.__globals__[name], names, depth + 1))
                      for name in sorted(names) if name in fn.__globals__)
        return (_Same(fn), tuple(cells), self.value(fn.__defaults__, names, depth + 1),
                self.value(fn.__kwdefaults__, names, depth + 1), named)

    @staticmethod
    def names(fn, depth: int) -> set:
        """Every name ``fn``'s code uses (attributes and globals alike), nested code objects included."""
        names, codes = set(), [fn.__code__]
        while codes:
            code = codes.pop()
            names.update(code.co_names)
            codes.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
        return names

    # ---------------------------------------------------------------- values

    def value(self, value, names, depth: int):
        if isinstance(value, _SCALARS):
            return (type(value).__name__, value)
        if isinstance(value, np.ndarray):
            if value.size > 4096 or value.dtype.hasobject:
                raise _Unknown("a large array")
            return ("array", value.dtype.str, value.shape, value.tobytes())
        if depth > _DEPTH:
            raise _Unknown(value)
        if isinstance(value, (list, tuple)):
            if len(value) > 256:
                raise _Unknown("a long list")
            return (type(value).__name__, tuple(self.value(v, names, depth + 1) for v in value))
        if isinstance(value, dict):
            if len(value) > 256:
                raise _Unknown("a large dict")
            return ("dict", tuple((self.value(k, names, depth + 1), self.value(v, names, depth + 1))
                                  for k, v in list(value.items())))
        if isinstance(value, (frozenset, set)) and len(value) <= 256 and all(isinstance(v, _SCALARS) for v in value):
            return ("set", tuple(sorted(repr(v) for v in value)))
        if isinstance(value, (types.FunctionType, functools.partial, types.MethodType)):
            return self.callable(value, depth + 1)
        if isinstance(value, (types.ModuleType, type)):
            if _is_library(value):
                return _Same(value)
            return ("namespace", _Same(value), self.attributes(value, names, depth))
        if isinstance(value, types.BuiltinFunctionType) or (_is_library(type(value)) and callable(value)
                                                            and not hasattr(value, "__dict__")):
            return _Same(value)  # a builtin, a ufunc
        if not _is_library(type(value)) and (hasattr(value, "__dict__") or hasattr(type(value), "__slots__")):
            return ("instance", _Same(type(value)), self.attributes(value, names, depth))
        raise _Unknown(value)  # a library's object (a Variable, a layer, a tensor): its state is not ours to read

    def attributes(self, obj, names, depth: int):
        """The attributes of a user's object (or class, or module) that the code names, by value; the
        methods and properties of its class that the code names are followed for the names they use."""
        if depth > _DEPTH:
            raise _Unknown(obj)
        if id(obj) in self.seen:
            return ("again",)
        self.seen.add(id(obj))
        names = set(names)
        cls = obj if isinstance(obj, type) else type(obj)
        own = vars(obj) if hasattr(obj, "__dict__") else {}
        if not isinstance(obj, types.ModuleType):
            pending = list(names)
            while pending:  # methods and properties the code names bring in the names they use
                name = pending.pop()
                if name in own and not isinstance(obj, type):
                    continue
                owner = next((k for k in cls.__mro__ if name in vars(k)), None)
                if owner is None or owner is object:
                    continue
                if _is_library(owner):  # read through a library class (a Layer's kernel): not ours to follow
                    raise _Unknown(name)
                member = vars(owner)[name]
                member = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
                if isinstance(member, types.FunctionType):
                    new = self.names(member, depth) - names
                    names |= new
                    pending.extend(new)
        slots = [n for k in cls.__mro__ for n in getattr(k, "__slots__", ()) if isinstance(n, str)]
        out = []
        for name in sorted(names):
            if name in own:
                value = own[name]
            elif name in slots and hasattr(obj, name):
                value = getattr(obj, name)
            else:
                continue
            if isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            out.append((name, self.value(value, names, depth + 1)))
        return tuple(out)
