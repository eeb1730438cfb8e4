"""Sandboxed templates for prompts, values and conditions.

Jinja2's ``ImmutableSandboxedEnvironment`` with ``StrictUndefined``: a flow file cannot reach Python
internals (``{{ ''.__class__ }}`` fails), cannot mutate values, and an undefined variable is an
error rather than silence. Every ``{{ expression }}`` output passes through ``_finalize``, which
removes ``<`` and ``>``: values that came from callers or HTTP responses can never inject Hoiio
``<url>``/``<speech>`` markup into a ``msg``. Output is capped (``OUTPUT_BUDGET``) so a template
cannot build a huge string.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engine.core.flow import RenderError

OUTPUT_BUDGET = 4000  # characters per rendered template; Hoiio's msg limit is 1000


def strip_markup(value: Any) -> str:
    return str(value).replace("<", "").replace(">", "")


def _finalize(value: Any) -> Any:
    if value is None:
        return ""
    return strip_markup(value)


_ENV = ImmutableSandboxedEnvironment(
    undefined=jinja2.StrictUndefined,
    finalize=_finalize,
    autoescape=False,
    keep_trailing_newline=False,
)


class TemplateSyntaxProblem(Exception):
    def __init__(self, message: str, lineno: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.lineno = lineno


def _undeclared(source: str, expression: bool = False) -> frozenset[str]:
    text = "{{ " + source + " }}" if expression else source
    return frozenset(meta.find_undeclared_variables(_ENV.parse(text)))


class JinjaTemplate:
    """Implements ``engine.core.flow.Template``."""

    __slots__ = ("source", "_template", "_vars")

    def __init__(self, source: str) -> None:
        self.source = source
        try:
            self._template = _ENV.from_string(source)
            self._vars = _undeclared(source)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateSyntaxProblem(exc.message or str(exc), exc.lineno) from None

    @property
    def is_constant(self) -> bool:
        return "{" not in self.source

    def variables(self) -> frozenset[str]:
        return self._vars

    def render(self, context: Mapping[str, Any]) -> str:
        if self.is_constant:
            return self.source
        out: list[str] = []
        size = 0
        try:
            for chunk in self._template.generate(dict(context)):
                size += len(chunk)
                if size > OUTPUT_BUDGET:
                    raise RenderError(f"the text grew longer than {OUTPUT_BUDGET} characters")
                out.append(chunk)
        except RenderError:
            raise
        except jinja2.UndefinedError as exc:
            raise RenderError(f"{exc.message} (no value was set for it)") from None
        except jinja2.exceptions.SecurityError as exc:
            raise RenderError(f"not allowed in a flow: {exc}") from None
        except Exception as exc:  # any failure of author-written logic is a flow error, not a crash
            raise RenderError(f"{type(exc).__name__}: {exc}") from None
        return "".join(out)

    def __repr__(self) -> str:
        return f"JinjaTemplate({self.source!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JinjaTemplate) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)


class JinjaExpression:
    """Implements ``engine.core.flow.Expression`` (``balance > 100 and vip``)."""

    __slots__ = ("source", "_expr", "_vars")

    def __init__(self, source: str) -> None:
        self.source = source
        try:
            self._expr = _ENV.compile_expression(source, undefined_to_none=False)
            self._vars = _undeclared(source, expression=True)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateSyntaxProblem(exc.message or str(exc), exc.lineno) from None

    def variables(self) -> frozenset[str]:
        return self._vars

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        try:
            value = self._expr(**dict(context))
            if isinstance(value, jinja2.Undefined):
                value._fail_with_undefined_error()
            return value
        except jinja2.UndefinedError as exc:
            raise RenderError(f"{exc.message} (no value was set for it)") from None
        except jinja2.exceptions.SecurityError as exc:
            raise RenderError(f"not allowed in a flow: {exc}") from None
        except Exception as exc:
            raise RenderError(f"{type(exc).__name__}: {exc}") from None

    def __repr__(self) -> str:
        return f"JinjaExpression({self.source!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JinjaExpression) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)
