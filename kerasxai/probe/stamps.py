"""What a user's function reads besides its arguments, frozen: when a compiled step may be reused.

A compiled step (TensorFlow's ``tf.function``, ``jax.jit``) runs a callable target once, while it
is traced, and bakes in everything the callable reads besides the logits: ``self.index`` of a
bound method, a closure variable, a global. Reusing that step after the value changed would
explain the old target, with nothing to say so. :func:`state_stamp` freezes that state; the probe
reuses a step only while its stamp is equal (:meth:`kerasxai.probe.Probe.step`), and traces the
callable again otherwise.

The stamp is conservative: it covers what it can prove, and anything else makes it equal to
nothing, so the callable is traced at every call (correct, as slow as a new callable each time).

- Plain data is compared by value: scalars, strings, slices, ranges, NumPy arrays of up to 4096
  values, and lists, tuples, dicts and sets of those (a list changed in place counts).
- A library's functions, classes and modules are compared by identity.
- A function of the user's own code: its code, closure, default arguments and the globals its
  code names, the same way (helper functions followed).
- An object of the user's own class (``self`` of a bound method, a callable object, an object in
  a closure): *all* its attributes, and all the attributes of its classes, the same way, provided
  its classes are plain (no ``__slots__``, no ``__getattr__``, no descriptors but properties,
  no library base class). Dataclasses are such classes; an enum's members are compared by their
  values, with its methods; a ``SimpleNamespace`` by all its attributes.
- A module of the user's own code: the attributes its code names.
- Not checkable (traced at every call): a library's object (a Keras ``Variable``, a layer, a
  tensor), a larger array, objects nested too deep, code that reads names dynamically
  (``getattr``, ``globals()``, ``vars``, ``sys.modules``, an ``import`` inside the function).
  What a function reads from a library's function (``time.time()``, a random generator) is
  baked in when traced: keep a target a function of the logits.

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

import dataclasses
import dis
import enum
import functools
import os
import sys
import sysconfig
import types
import weakref

import numpy as np

_SCALARS = (bool, int, str, bytes, type(None), type(Ellipsis))
# a library's constants, compared by identity (a dataclass's __init__ has them as defaults)
_CONSTANTS = tuple(getattr(dataclasses, name) for name in ("MISSING", "_HAS_DEFAULT_FACTORY") if hasattr(dataclasses, name))
_FLOATS = (float, complex)  # and NumPy's scalars: compared by their exact bits, -0.0 is not 0.0
_LIBRARY_ROOTS = tuple(
    os.path.abspath(p) + os.sep
    for p in {sysconfig.get_paths().get("purelib"), sysconfig.get_paths().get("platlib"),
              sysconfig.get_paths().get("stdlib"), sys.base_prefix, sys.prefix,
              os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}  # kerasxai itself
    if p
)
# names through which code reads what its own names do not say
_DYNAMIC = frozenset({"getattr", "globals", "vars", "locals", "eval", "exec", "__dict__", "modules",
                      "attrgetter", "__getattribute__", "__import__", "import_module", "setattr", "delattr"})
# objects and functions followed at most this deep (a lambda over an object's method: 7; each dataclass
# nested by default_factory: 5 more, its __init__ reading the next class)
_DEPTH = 40
_BUDGET = 20_000  # values read at most per stamp (a list holding one large list many times)
# a class's entries that hold no state a method reads (a dataclass's fields are its __init__'s, stamped)
_SKIPPED = frozenset({"__dict__", "__weakref__", "__module__", "__qualname__", "__doc__", "__annotations__",
                      "__firstlineno__", "__static_attributes__", "__dataclass_fields__", "__dataclass_params__",
                      "__match_args__"})
_ENUM_MACHINERY = frozenset({"_member_map_", "_value2member_map_", "_member_names_", "_member_type_",
                             "_new_member_", "_use_args_", "_unhashable_values_", "_value_repr_",
                             "_singles_mask_", "_all_bits_", "_flag_mask_", "_inverted_", "_boundary_",
                             "__new__", "_generate_next_value_"})
_MEMBER_FIXED = frozenset({"_value_", "_name_", "__objclass__", "_sort_order_", "__init__"})  # an enum member's own


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
    """A value equal to the next call's stamp only when ``fn`` reads the same state (see the module).

    Never raises: a callable whose state cannot be checked gets a stamp equal to nothing.
    """
    try:
        stamper = _Stamper()
        return stamper.callable(fn, 0), stamper.modules_read()
    except Exception:  # _Unknown, or whatever a user's object raised while it was read
        return _Never()


def _library_module(module) -> bool:
    path = getattr(module, "__file__", None)
    if path is None:  # builtins and compiled-in modules are the library's; a module made at run time is not
        return getattr(module, "__name__", None) in sys.builtin_module_names
    return os.path.abspath(path).startswith(_LIBRARY_ROOTS)


def _is_library(obj) -> bool:
    """Whether a function, class or module comes from an installed package or the standard library
    (kerasxai included): a function by its code's file (a notebook's, a doctest's: the user's), a
    class by its module, where it must be found under its name (``exec`` makes classes elsewhere)."""
    if isinstance(obj, types.ModuleType):
        return _library_module(obj)
    code = obj.__code__ if isinstance(obj, types.FunctionType) else None
    if isinstance(code, types.CodeType):
        return os.path.isabs(code.co_filename) and os.path.abspath(code.co_filename).startswith(_LIBRARY_ROOTS)
    if isinstance(obj, type):
        name = obj.__dict__.get("__module__") or type.__dict__["__module__"].__get__(obj)  # a C type: builtins'
        module = sys.modules.get(name if isinstance(name, str) else "")
        if module is None or not _library_module(module):
            return False
        found = module
        for part in (obj.__qualname__ or "").split("."):
            found = found.__dict__.get(part) if isinstance(found, (types.ModuleType, type)) else None
        return found is obj
    return isinstance(obj, (types.BuiltinFunctionType, types.BuiltinMethodType))


@functools.lru_cache(maxsize=4096)
def _imports(code) -> bool:
    """Whether a code object imports (read once per code object)."""
    return any(i.opname in ("IMPORT_NAME", "IMPORT_FROM") for i in dis.get_instructions(code))


class _Stamper:
    def __init__(self):
        self.seen = set()  # ids of the functions, objects and classes stamped in full already
        self.budget = _BUDGET
        self.names: set = set()  # every name the code of every function stamped reads
        self.modules: dict = {}  # id -> (the user's module, {attribute: its stamp}), in the order found

    def modules_read(self):
        """The user's modules found anywhere (a global, an object's attribute, a list item), each by the
        attributes that any stamped code names: read once all the code is known, and again while
        reading them finds more code or modules."""
        while True:
            todo = [(module, stamped, name) for module, stamped in list(self.modules.values())
                    for name in sorted(self.names) if name in vars(module) and name not in stamped]
            if not todo:
                break
            for module, stamped, name in todo:
                stamped[name] = self.value(vars(module)[name], 1)
        return tuple((_Same(module), tuple(sorted(stamped.items(), key=lambda kv: kv[0])))
                     for module, stamped in self.modules.values())

    def first_visit(self, obj, depth: int) -> bool:
        """Whether ``obj`` is to be stamped in full here (not already in this stamp); too deep: unknown."""
        if depth > _DEPTH:
            raise _Unknown(obj)
        if id(obj) in self.seen:
            return False
        self.seen.add(id(obj))
        return True

    # ---------------------------------------------------------------- callables

    def callable(self, fn, depth: int):
        if depth > _DEPTH:
            raise _Unknown(fn)
        if isinstance(fn, functools.partial):
            return ("partial", self.callable(fn.func, depth + 1), self.value(fn.args, depth + 1),
                    self.value(fn.keywords, depth + 1))
        if isinstance(fn, types.MethodType):  # a bound method: its function and its instance (or class), in full
            function, owner = fn.__func__, fn.__self__
            if not isinstance(function, types.FunctionType) or _is_library(function):
                raise _Unknown(fn)  # a library object's method (layer.call): its state is the library's
            whole = self.cls(owner, depth + 1) if isinstance(owner, type) else self.instance(owner, depth + 1)
            return ("method", self.function(function, depth + 1), whole)
        if isinstance(fn, types.FunctionType):  # the target itself is read even from an installed package
            return ("function", self.function(fn, depth + 1, always=depth == 0))
        if isinstance(fn, (types.BuiltinFunctionType, types.BuiltinMethodType)):
            return ("builtin", _Same(fn))
        if isinstance(fn, type):
            if _is_library(fn):
                return ("class", _Same(fn))
            raise _Unknown(fn)
        return ("object", self.instance(fn, depth + 1))  # a callable object: its class's __call__ among the rest

    def function(self, fn, depth: int, always: bool = False):
        """A function: by identity if a library's; else its code, closure, defaults and the globals it names."""
        if _is_library(fn) and not always:
            return _Same(fn)
        if not self.first_visit(fn, depth):
            return ("again", _Same(fn))
        code = fn.__code__
        names = set()
        codes = [code]
        while codes:  # nested code (comprehensions, inner functions) included
            c = codes.pop()
            names.update(c.co_names)
            codes.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
            if _imports(c):
                raise _Unknown("an import inside the function")
        if names & _DYNAMIC:
            raise _Unknown("names read dynamically")
        self.names.update(names)
        cells = []
        for cell in fn.__closure__ or ():
            try:
                contents = cell.cell_contents
            except ValueError:  # an empty cell
                cells.append(("empty",))
                continue
            cells.append(self.value(contents, depth + 1))
        named = tuple((name, self.value(fn.__globals__[name], depth + 1))
                      for name in sorted(names) if name in fn.__globals__)
        return (_Same(fn), code, tuple(cells), self.value(fn.__defaults__, depth + 1),
                self.value(fn.__kwdefaults__, depth + 1), named)

    # ---------------------------------------------------------------- values

    def value(self, value, depth: int):
        self.budget -= 1
        if self.budget < 0:
            raise _Unknown("too many values")
        if isinstance(value, enum.Enum):  # a member (an IntEnum's too): its class in full, every member's
            own = tuple((k, self.value(v, depth + 1)) for k, v in sorted(list(vars(value).items()))  # value and
                        if k not in _MEMBER_FIXED)  # attributes; and its own (a Flag's combination is no member)
            return ("member", self.cls(type(value), depth + 1), value.name, own)
        # the exact types: a user's subclass of int or str (an object with attributes of its own) is an object
        if type(value) in _SCALARS or isinstance(value, np.dtype):
            return (type(value).__name__, value)
        if type(value) in _FLOATS or isinstance(value, np.generic):
            return (type(value).__name__, np.asarray(value).tobytes())
        if type(value) in (slice, range):  # an index a target takes: its bounds
            return (type(value).__name__, self.value(value.start, depth + 1), self.value(value.stop, depth + 1),
                    self.value(value.step, depth + 1))
        if isinstance(value, np.ndarray):
            if value.size > 4096 or value.dtype.hasobject:
                raise _Unknown("a large array")
            return ("array", value.dtype.str, value.shape, value.tobytes())
        if depth > _DEPTH:
            raise _Unknown(value)
        if type(value) in (list, tuple):
            if len(value) > 256:
                raise _Unknown("a long list")
            return (type(value).__name__, tuple(self.value(v, depth + 1) for v in value))
        if type(value) is dict:
            if len(value) > 256:
                raise _Unknown("a large dict")
            return ("dict", tuple((self.value(k, depth + 1), self.value(v, depth + 1)) for k, v in list(value.items())))
        if type(value) in (set, frozenset):
            items = list(value)
            if len(items) > 256 or not all(type(v) in _SCALARS for v in items):
                raise _Unknown("a set")
            return ("set", tuple(sorted(repr(v) for v in items)))
        if isinstance(value, (types.FunctionType, functools.partial, types.MethodType, types.BuiltinFunctionType,
                              types.BuiltinMethodType)):
            return self.callable(value, depth + 1)
        if isinstance(value, types.ModuleType):
            if _is_library(value):
                return _Same(value)
            # the user's module: the attributes the code names, read at the end (a module's other contents
            # are its own business; the names are known once every function is stamped)
            self.modules.setdefault(id(value), (value, {}))
            return ("module", _Same(value))
        if isinstance(value, type):
            return _Same(value) if _is_library(value) else self.cls(value, depth + 1)
        if any(value is c for c in _CONSTANTS):
            return _Same(value)
        if type(value) is types.SimpleNamespace:  # a bag of attributes: all of them, by value
            if not self.first_visit(value, depth):
                return ("again", _Same(value))
            return ("namespace", _Same(value), tuple((name, self.value(v, depth + 1))
                                                    for name, v in sorted(list(vars(value).items()))))
        if _is_library(type(value)):
            raise _Unknown(value)  # a library's object (a Variable, a layer, a tensor): its state is not ours to read
        return self.instance(value, depth + 1)

    def cls(self, cls, depth: int):
        """A user's class, in full: every attribute of it and of its bases, by value; plain classes only."""
        if not self.first_visit(cls, depth):
            return ("again", _Same(cls))
        is_enum = type(cls) is enum.EnumMeta  # a metaclass of the user's own: unknown, below
        if type(cls) is not type and not is_enum:
            raise _Unknown("a metaclass")
        parts = []
        if is_enum:  # its members: their values, and attributes set on them (by their __init__, or later)
            parts.append(("members", tuple(
                (name, self.value(m._value_, depth + 1),
                 tuple((k, self.value(v, depth + 1)) for k, v in sorted(list(vars(m).items())) if k not in _MEMBER_FIXED))
                for name, m in list(cls.__members__.items()))))
        for base in cls.__mro__:
            if base is object:
                continue
            if _is_library(base):
                if is_enum:
                    continue  # Enum, IntEnum, int, str: the library's bases of an enum hold no state of its own
                raise _Unknown(base)  # a library base class (dict, NamedTuple, a Layer): its state is its own
            members = []
            for name, member in list(vars(base).items()):
                if name in _SKIPPED or (is_enum and (name in cls.__members__ or name in _ENUM_MACHINERY)):
                    continue
                if name in ("__slots__", "__getattr__", "__getattribute__", "__get__", "__set__"):
                    raise _Unknown(name)  # attributes not in the instance's dict, or computed
                if isinstance(member, property):
                    if member.fset is not None or member.fdel is not None:
                        members.append((name, "property", self.value(member.fget, depth + 1),
                                        self.value(member.fset, depth + 1), self.value(member.fdel, depth + 1)))
                    else:
                        members.append((name, "property", self.value(member.fget, depth + 1)))
                elif isinstance(member, (staticmethod, classmethod)):
                    members.append((name, type(member).__name__, self.value(member.__func__, depth + 1)))
                elif is_enum and isinstance(member, (types.WrapperDescriptorType, types.MethodDescriptorType,
                                                     types.BuiltinFunctionType)):
                    members.append((name, _Same(member)))  # int's or str's own method, copied in by the enum
                elif hasattr(type(member), "__get__") and not isinstance(member, types.FunctionType):
                    raise _Unknown(name)  # another descriptor: what it reads is not said
                else:
                    members.append((name, self.value(member, depth + 1)))
            parts.append((_Same(base), tuple(members)))
        return ("class", tuple(parts))

    def instance(self, obj, depth: int):
        """An object of a user's class, in full: its class and every attribute in its ``__dict__``, by value."""
        if not self.first_visit(obj, depth):
            return ("again", _Same(obj))
        whole = self.cls(type(obj), depth + 1)
        own = getattr(obj, "__dict__", None)
        if type(own) is not dict:
            raise _Unknown(obj)
        return ("instance", _Same(obj), whole,
                tuple((name, self.value(v, depth + 1)) for name, v in sorted(list(own.items()), key=lambda kv: kv[0])))
