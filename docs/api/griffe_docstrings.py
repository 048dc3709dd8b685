"""Griffe extension (mkdocs.yml, mkdocstrings ``extensions``): the project's docstrings as the API pages show them.

The docstrings are Google style with two habits griffe's Google parser does not know; this
rewrites, for the site only, the text griffe parses (the source stays as it is):

- ``Example:`` (Keras' section title) is read as ``Examples:``, so its ``>>>`` lines render as
  highlighted code, not as Markdown's nested quotes. ``Input shape:`` and ``Output shape:``
  need nothing: they render as titled blocks.
- Sphinx roles (``:class:`~keras_sysid.models.SystemIdentificationModel```, ``:func:`load```)
  become inline code (``SystemIdentificationModel``, ``load``), and a reST ``::`` that opens a
  literal block becomes ``:``.
"""

from __future__ import annotations

import re

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:$", re.MULTILINE)
_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj|const):`(~?)([^`]+)`")
_LITERAL_BLOCK = re.compile(r"(\S)::$", re.MULTILINE)


def _role_as_code(match: re.Match) -> str:
    short, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


def rewrite(text: str) -> str:
    """The docstring ``text`` as the site renders it."""
    text = _EXAMPLE.sub(r"\1Examples:", text)
    text = _ROLE.sub(_role_as_code, text)
    return _LITERAL_BLOCK.sub(r"\1:", text)


class ProjectDocstrings(griffe.Extension):
    """Rewrites every docstring as it is loaded (:func:`rewrite`)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
