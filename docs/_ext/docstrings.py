"""A griffe extension: reads kerasxai's docstrings as the API pages should show them.

The docstrings are written for ``help()`` and doctest as well as for this site. Two
habits of theirs are rewritten here, for display only (the source is not changed):

- Sphinx roles (``:func:`gradcam```, ``:mod:`kerasxai.methods.engine```) become inline code,
  since Markdown has no such roles;
- a line "Other arguments as in ..." written as the last item of an ``Args:`` section is
  moved after the section, where it reads as the sentence it is.
"""

from __future__ import annotations

import re

import griffe

_ROLE = re.compile(r":(?:func|meth|mod|class|data|attr|obj|exc):`~?([^`]+)`")
_SECTION = re.compile(r"^(\s*)(Args|Arguments|Parameters):\s*$")


def _role(match: re.Match) -> str:
    return f"`{match.group(1)}`"


def _move_other_arguments(text: str) -> str:
    lines = text.splitlines()
    out: list[str] = []
    moved: list[str] = []
    in_args, indent = False, ""
    for line in lines:
        header = _SECTION.match(line)
        if header:
            in_args, indent = True, header.group(1)
            out.append(line)
            continue
        if in_args and line.strip() and not line.startswith(indent + " "):
            in_args = False  # the section ended
            if moved:
                out.extend(["", *moved, ""])
                moved = []
        if in_args and line.strip().startswith("Other arguments as in"):
            moved.append(indent + line.strip())
            continue
        out.append(line)
    if moved:
        out.extend(["", *moved])
    return "\n".join(out)


class ReadableDocstrings(griffe.Extension):
    """Rewrites every docstring's value before it is parsed (see the module docstring)."""

    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:  # noqa: D102
        if obj.docstring is None:
            return
        text = obj.docstring.value
        text = _ROLE.sub(_role, text)
        text = _move_other_arguments(text)
        obj.docstring.value = text
