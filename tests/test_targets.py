"""Target specs -> class indices and scores, per kind of head."""

import dataclasses
import enum
import types

import keras
import numpy as np
import pytest
from keras import ops

from kerasxai.probe.heads import Head
from kerasxai.probe.targets import class_indices, class_scores

SOFTMAX = Head("out", 0, "softmax", 10, "softmax")
BINARY = Head("out", 0, "binary", 1, "sigmoid")
REGRESSION = Head("out", 0, "regression", 1, None)
MULTILABEL = Head("out", 0, "multilabel", 3, "sigmoid")


def test_class_indices_shorthands():
    assert class_indices(None, 3, SOFTMAX).tolist() == [-1, -1, -1]
    assert class_indices(7, 2, SOFTMAX).tolist() == [7, 7]
    assert class_indices(np.int64(2), 1, SOFTMAX).tolist() == [2]
    assert class_indices([0, 9], 2, SOFTMAX).tolist() == [0, 9]
    assert class_indices(1, 2, BINARY).tolist() == [1, 1]  # sigmoid: 0 and 1 are valid
    assert class_indices(None, 2, REGRESSION).tolist() == [0, 0]  # the value itself
    assert class_indices([5, 1, 2, 8], 2, SOFTMAX, start=2).tolist() == [2, 8]  # a batch's slice


def test_label_targets_take_int_and_one_hot_labels():
    assert class_indices("label", 3, SOFTMAX, labels=np.array([4, 0, 9])).tolist() == [4, 0, 9]
    assert class_indices("label", 2, MULTILABEL, labels=np.eye(3)[[2, 1]]).tolist() == [2, 1]
    with pytest.raises(ValueError, match="carry none"):
        class_indices("label", 2, SOFTMAX)


@pytest.mark.parametrize(
    "target, head, message",
    [(10, SOFTMAX, "0..9"), (-1, SOFTMAX, "out of range"), (2, BINARY, "sigmoid"), (1, REGRESSION, "regression"),
     ("cat", SOFTMAX, "must be None"), (True, SOFTMAX, "must be None")],
)
def test_class_indices_errors(target, head, message):
    with pytest.raises(ValueError, match=message):
        class_indices(target, 2, head)


def test_sequence_length_is_checked_against_the_whole_input():
    with pytest.raises(ValueError, match="3 classes but there are 2"):
        class_indices([1, 2, 3], 2, SOFTMAX, total=2)


def _np(t):
    return ops.convert_to_numpy(t).tolist()


def test_class_scores_per_head():
    logits = np.array([[1.0, 5.0, -2.0], [3.0, 0.0, 4.0]], "float32")
    scores, used = class_scores(Head("o", 0, "softmax", 3, "softmax"), logits, np.array([-1, 0], "int32"))
    assert _np(used) == [1, 0] and _np(scores) == [5.0, 3.0]
    z = np.array([[2.0], [-3.0], [0.5]], "float32")
    scores, used = class_scores(BINARY, z, np.array([-1, -1, 0], "int32"))
    assert _np(used) == [1, 0, 0] and _np(scores) == [2.0, 3.0, -0.5]  # class 0 scores -logit
    scores, used = class_scores(REGRESSION, z, np.array([0, 0, 0], "int32"))
    assert _np(scores) == [2.0, -3.0, 0.5]  # a regression value is explained as it is, never negated
    p = np.array([[0.9], [0.2]], "float32")  # logits=False keeps the sigmoid: class 0 is 1 - p
    scores, used = class_scores(Head("o", 0, "binary", 1, None), p, np.array([-1, -1], "int32"))
    assert _np(used) == [1, 0] and np.allclose(_np(scores), [0.9, 0.8])


def test_a_callable_target_must_give_one_score_per_image(gap_model, images):
    import kerasxai

    for bad in (lambda logits: logits, lambda logits: logits[:, :2]):
        with pytest.raises(ValueError, match=r"one score per image, shape \(N,\)"):
            kerasxai.gradcam(gap_model, images, target=bad)
    good = kerasxai.gradcam(gap_model, images, target=lambda logits: logits[:, 1:2], raw=True)  # (N, 1) is fine
    np.testing.assert_allclose(good, kerasxai.gradcam(gap_model, images, target=1, raw=True), rtol=1e-5, atol=1e-7)


def test_a_callable_target_that_mixes_the_images_is_refused_even_when_the_shapes_agree(gap_model, images):
    """Summing over the images gives one value per class: with as many images as classes it has the
    batch's shape, and would be explained as if it were each image's score."""
    import keras

    import kerasxai

    five = np.concatenate([images, images[:2]])  # 5 images, 5 classes
    for bad in (lambda logits: keras.ops.sum(logits, axis=0), lambda logits: keras.ops.max(logits, axis=0)):
        with pytest.raises(ValueError, match=r"score each image from its own logits.*never over the images"):
            kerasxai.gradcam(gap_model, five, target=bad)
    per_image = kerasxai.gradcam(gap_model, five, target=lambda logits: keras.ops.sum(logits[:, 1:3], axis=-1), raw=True)
    alone = np.stack([kerasxai.gradcam(gap_model, five[i], target=lambda logits: keras.ops.sum(logits[:, 1:3], axis=-1),
                                       raw=True) for i in range(5)])
    np.testing.assert_allclose(per_image, alone, rtol=1e-5, atol=1e-7)


def test_the_steps_of_a_callable_target_go_when_the_callable_goes(gap_model, images):
    """A service passing a new lambda on every call must not keep a compiled step per lambda."""
    import gc

    import kerasxai
    from kerasxai.probe import get_probe

    kept = lambda logits: logits[:, 2]  # noqa: E731
    first = kerasxai.gradcam(gap_model, images, target=kept, raw=True)
    gc.collect()
    probe = get_probe(gap_model, None)
    before = len(probe._callable_steps)
    for i in range(6):
        kerasxai.gradcam(gap_model, images, target=lambda logits, i=i: logits[:, i % 5], raw=True)
    gc.collect()
    assert kept in probe._callable_steps and len(probe._callable_steps) == before
    np.testing.assert_allclose(kerasxai.gradcam(gap_model, images, target=kept, raw=True), first, rtol=1e-6)
    np.testing.assert_allclose(first, kerasxai.gradcam(gap_model, images, target=2, raw=True), rtol=1e-5, atol=1e-7)


def test_a_bound_method_target_is_compiled_once_and_freed_with_its_instance(gap_model, images):
    """``target=scorer.score`` is a new bound-method object at every access: its steps are found again
    on the next call (not compiled per call), and go when the instance goes."""
    import gc

    import kerasxai
    from kerasxai.probe import get_probe

    class Scorer:
        def __init__(self, index):
            self.index = index

        def score(self, logits):
            return logits[:, self.index]

    scorer = Scorer(3)
    maps = [kerasxai.gradcam(gap_model, images, target=scorer.score, raw=True) for _ in range(3)]
    probe = get_probe(gap_model, None)
    steps = probe._method_steps[scorer][Scorer.score]
    assert len(steps) == 1 and all(len(run.compiled) == 1 for run in steps.values())
    run = next(iter(steps.values()))
    kerasxai.gradcam(gap_model, images[:2], target=scorer.score, raw=True)  # the same step, another batch
    assert probe._method_steps[scorer][Scorer.score] is steps and next(iter(steps.values())) is run
    reference = kerasxai.gradcam(gap_model, images, target=3, raw=True)
    for m in maps:
        np.testing.assert_allclose(m, reference, rtol=1e-5, atol=1e-7)
    other = Scorer(1)  # another instance: its own steps, its own index
    np.testing.assert_allclose(kerasxai.gradcam(gap_model, images, target=other.score, raw=True),
                               kerasxai.gradcam(gap_model, images, target=1, raw=True), rtol=1e-5, atol=1e-7)
    del scorer, steps, run, other
    gc.collect()
    assert len(probe._method_steps) == 0


def test_a_callable_target_whose_state_changed_is_traced_again_never_explained_with_the_old_values(gap_model, images):
    """A compiled step bakes in what the callable reads besides the logits: an instance's attribute, a
    closure variable, a list changed in place. Changed between calls, the step is traced again."""
    import kerasxai
    from kerasxai.probe import get_probe

    expected = {c: kerasxai.gradcam(gap_model, images, target=c, raw=True) for c in (1, 2, 4)}

    class Scorer:
        def __init__(self):
            self.index, self.classes = 1, [1]

        def score(self, logits):
            return logits[:, self.index]

        def mean(self, logits):
            return keras.ops.mean(keras.ops.take(logits, self.classes, axis=1), axis=1)

    scorer = Scorer()
    np.testing.assert_allclose(kerasxai.gradcam(gap_model, images, target=scorer.score, raw=True), expected[1], rtol=1e-5, atol=1e-7)
    run = next(iter(get_probe(gap_model, None)._method_steps[scorer][Scorer.score].values()))
    kerasxai.gradcam(gap_model, images, target=scorer.score, raw=True)
    assert next(iter(get_probe(gap_model, None)._method_steps[scorer][Scorer.score].values())) is run  # unchanged: kept
    scorer.index = 4
    np.testing.assert_allclose(kerasxai.gradcam(gap_model, images, target=scorer.score, raw=True), expected[4], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(kerasxai.gradcam(gap_model, images, target=scorer.mean, raw=True), expected[1], rtol=1e-5, atol=1e-7)
    scorer.classes[0] = 2  # in place
    np.testing.assert_allclose(kerasxai.gradcam(gap_model, images, target=scorer.mean, raw=True), expected[2], rtol=1e-5, atol=1e-7)

    index = 2
    closure = lambda logits: logits[:, index]  # noqa: E731
    np.testing.assert_allclose(kerasxai.gradcam(gap_model, images, target=closure, raw=True), expected[2], rtol=1e-5, atol=1e-7)
    index = 1
    np.testing.assert_allclose(kerasxai.gradcam(gap_model, images, target=closure, raw=True), expected[1], rtol=1e-5, atol=1e-7)


def _each_target_follows(model, images, targets, change, expected):
    """``change(index)`` for index 1, 3, 1: each target's Grad-CAM must then be that class's, never the old one."""
    import kerasxai

    for index in (1, 3, 1):
        change(index)
        for what, target in targets.items():
            got = kerasxai.gradcam(model, images, target=target, raw=True)
            np.testing.assert_allclose(got, expected[index], rtol=1e-5, atol=1e-7, err_msg=f"{what}, index {index}")


class _Config:  # a module-level namespace a target reads (class attributes)
    index = 1


def _helper_reading_a_global(logits):
    return logits[:, _Config.index]


def test_state_a_target_reads_through_objects_is_checked_or_traced_at_every_call(gap_model, images):
    """What the stamp cannot check (an object inside an object, a Keras Variable, a large array, a
    layer's own call) is traced at every call, never reused stale; what it can (a class attribute
    reached through a global, a helper function's global) is compared by value."""
    import kerasxai

    expected = {c: kerasxai.gradcam(gap_model, images, target=c, raw=True) for c in (1, 3)}

    class Inner:
        index = 1

    class Nested:
        def __init__(self):
            self.inner = Inner()

        def score(self, logits):
            return logits[:, self.inner.index]

    class WithVariable:
        def __init__(self):
            self.weights = keras.Variable(np.eye(5, dtype="float32")[1], trainable=False)

        def score(self, logits):
            return ops.sum(logits * self.weights, axis=1)

    class WithLargeArray:
        def __init__(self):
            self.weights = np.zeros((5, 1000), "float32")
            self.weights[1] = 1.0

        def score(self, logits):
            return ops.sum(logits * ops.convert_to_tensor(self.weights[:, 0]), axis=1)

    class Base:
        k = 1

    class Sub(Base):
        def score(self, logits):
            return logits[:, self.k]

    class Dynamic:
        def __init__(self):
            self.k = 1

        def score(self, logits):
            return logits[:, getattr(self, "k")]

    class Child(Dynamic):
        def score(self, logits):
            return super().score(logits)

    import dataclasses

    @dataclasses.dataclass
    class Unhashable:  # eq=True: no __hash__
        k: int = 1

        def __call__(self, logits):
            return logits[:, self.k]

    class Column(int):  # an int with attributes of its own: was stamped by its value alone, and reused stale
        pass

    column = Column(0)
    column.index = 1

    namespace: dict = {}
    exec("class Cfg:\n    k = 1\ntarget = lambda logits: logits[:, Cfg.k]", namespace)  # no file, no module

    nested, variable, large, sub, dynamic, child, unhashable = (Nested(), WithVariable(), WithLargeArray(), Sub(),
                                                                Dynamic(), Child(), Unhashable())
    holder = Nested()
    closure_over_object = lambda logits: logits[:, holder.inner.index]  # noqa: E731

    def change(index):
        nested.inner.index = index
        variable.weights.assign(np.eye(5, dtype="float32")[index])
        large.weights[:] = 0.0
        large.weights[index] = 1.0
        holder.inner = Inner()
        holder.inner.index = index
        _Config.index = index
        Base.k = index
        dynamic.k = child.k = unhashable.k = column.index = index
        namespace["Cfg"].k = index

    targets = {"an object inside the instance": nested.score, "a keras Variable": variable.score,
               "a large array changed in place": large.score, "a lambda closing over an object": closure_over_object,
               "a class attribute read through a global": lambda logits: logits[:, _Config.index],
               "a helper function's global": _helper_reading_a_global,
               "a base class's attribute": sub.score, "getattr with a string": dynamic.score, "super()": child.score,
               "a class made by exec": namespace["target"], "a callable object that is not hashable": unhashable,
               "an attribute of an int subclass": lambda logits: logits[:, column.index]}
    try:
        _each_target_follows(gap_model, images, targets, change, expected)
    finally:
        _Config.index = 1


class _Animal(enum.Enum):
    CAT = 1
    DOG = 3

    def column(self):
        return self.value * _ENUM_SCALE


_ENUM_SCALE = 1


class _Column(enum.Enum):
    FIRST = (1,)

    def __init__(self, index):
        self.index = index  # an attribute of the member, changed below


class _Flags(enum.Flag):
    A = 1
    B = 2


# a module of the user's own code (made at run time: not an installed package's)
_user_module = types.ModuleType("kerasxai_test_user_module")
_user_module.INDEX = 1


class _Kind(enum.IntEnum):
    ONE = 1
    THREE = 3


_KIND = _Kind.ONE


def test_dataclasses_enums_and_namespaces_are_compared_by_value_not_traced_at_every_call(gap_model, images):
    """A dataclass, an enum or a SimpleNamespace that a target reads is stamped by value: the step is
    kept while they are unchanged, and traced again when they change."""
    global _ENUM_SCALE, _KIND
    import kerasxai
    from kerasxai.probe.stamps import _Never, state_stamp

    expected = {c: kerasxai.gradcam(gap_model, images, target=c, raw=True) for c in (1, 3)}

    @dataclasses.dataclass
    class Config:
        index: int = 1

        def score(self, logits):
            return logits[:, self.index]

    @dataclasses.dataclass(frozen=True)
    class Frozen:
        index: int = 1

    @dataclasses.dataclass
    class WithFactory:
        classes: list = dataclasses.field(default_factory=lambda: [1])

    @dataclasses.dataclass
    class Innermost:
        index: int = 1

    @dataclasses.dataclass
    class Middle:
        inner: Innermost = dataclasses.field(default_factory=Innermost)

    @dataclasses.dataclass
    class Outer:  # three dataclasses deep through default factories: was past the stamp's depth, traced every call
        middle: Middle = dataclasses.field(default_factory=Middle)

    @dataclasses.dataclass
    class Outermost:
        outer: Outer = dataclasses.field(default_factory=Outer)

    @dataclasses.dataclass
    class Holder:  # a user's module reached through an object: its attributes that code names are read
        module: object = None

    config, frozen, factory, nested = Config(), [Frozen()], WithFactory(), Outermost()
    columns = types.SimpleNamespace(cols=slice(1, 2), rows=range(0, 1), all=...)  # a slice was not checkable
    holder, modules = Holder(_user_module), [_user_module]
    flags = _Flags.A | _Flags.B  # a Flag's combination is no member: its own attributes
    namespace, member = types.SimpleNamespace(index=1, module=_user_module), [_Animal.CAT]
    targets = {"a dataclass's method": config.score, "a lambda over a dataclass": lambda y: y[:, config.index],
               "a frozen dataclass replaced in a list": lambda y: y[:, frozen[0].index],
               "a dataclass with a default factory": lambda y: y[:, factory.classes[0]],
               "dataclasses four deep": lambda y: y[:, nested.outer.middle.inner.index],
               "a slice in a namespace": lambda y: y[columns.all, columns.cols][:, 0],
               "a range in a namespace": lambda y: y[:, columns.rows[0]],
               "a SimpleNamespace": lambda y: y[:, namespace.index],
               "an enum member": lambda y: y[:, member[0].value],
               "an enum's method reading a global": lambda y: y[:, _Animal.CAT.column()],
               "an enum member's attribute": lambda y: y[:, _Column.FIRST.index],
               "an IntEnum member as the index": lambda y: y[:, _KIND],
               "a user's module in a dataclass": lambda y: y[:, holder.module.INDEX],
               "a user's module in a list": lambda y: y[:, modules[0].INDEX],
               "a user's module in a namespace": lambda y: y[:, namespace.module.INDEX],
               "an attribute of a Flag combination": lambda y: y[:, flags.index]}
    for what, target in targets.items():
        stamp = state_stamp(target)
        assert not isinstance(stamp, _Never) and state_stamp(target) == stamp, what

    def change(index):
        global _ENUM_SCALE, _KIND
        config.index, frozen[0], factory.classes[0], namespace.index = index, Frozen(index), index, index
        nested.outer.middle.inner.index, columns.cols, columns.rows = index, slice(index, index + 1), range(index, 2 * index)
        _user_module.INDEX, flags.index = index, index
        member[0] = _Animal.CAT if index == 1 else _Animal.DOG
        _ENUM_SCALE, _Column.FIRST.index, _KIND = index, index, _Kind(index)

    try:
        _each_target_follows(gap_model, images, targets, change, expected)
    finally:
        _ENUM_SCALE, _Column.FIRST.index, _KIND, _user_module.INDEX = 1, 1, _Kind.ONE, 1
