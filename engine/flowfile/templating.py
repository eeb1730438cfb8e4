"""Sandboxed templates for prompts, values and conditions.

Jinja2's ``ImmutableSandboxedEnvironment`` with ``StrictUndefined``: a flow file cannot reach Python
internals (``{{ ''.__class__ }}`` fails), cannot mutate values, and an undefined variable is an
error rather than silence. Every ``{{ expression }}`` output passes through ``_finalize``, which
removes ``<`` and ``>``: values that came from callers or HTTP responses can never inject Hoiio
``<url>``/``<speech>`` markup into a ``msg``. Output is capped (``OUTPUT_BUDGET``) so a template
cannot build a huge string.

Templates are parsed (and so syntax-checked) when made, and compiled to Python only when first
rendered; the parse is analysed once (``Analysis``: variables read, unsafe constructs, fixed text)
for the flow checker, and cached by source so reloading flows costs little.

May import Jinja2 and ``engine.core.flow``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.environment import TemplateExpression
from jinja2.parser import Parser
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


#: names every template can use without a flow setting them (``range``, ``dict``, ``namespace`` ...)
GLOBAL_NAMES = frozenset(_ENV.globals)


class TemplateSyntaxProblem(Exception):
    def __init__(self, message: str, lineno: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.lineno = lineno


@lru_cache(maxsize=8192)
def _analyse(source: str) -> Analysis:
    """Parse and analyse a template. Cached by source: reloading flows (and the many short templates
    such as ``{{ session }}`` that flows repeat) costs nothing the second time."""
    simple = _simple_analysis(source)
    if simple is not None:
        return simple
    try:
        return Analysis(_ENV.parse(source))
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateSyntaxProblem(exc.message or str(exc), exc.lineno) from None


_SIMPLE_OUTPUT = re.compile(r"\{\{ *([A-Za-z_][A-Za-z0-9_]*) *\}\}")
# names the parser does not read as variables (constants, operators, statements)
_NOT_NAMES = frozenset({
    "true", "false", "none", "True", "False", "None", "and", "or", "not", "in", "is", "if", "else", "elif",
    "for", "recursive", "with", "without", "import", "from", "as", "set", "block", "macro", "call", "include",
    "extends", "raw", "filter", "endif", "endfor", "pluralize", "trans",
})


def _simple_analysis(source: str) -> Analysis | None:
    """The analysis of a template that is only text and ``{{ name }}`` outputs (most prompts),
    without running Jinja's lexer and parser; None for anything else. Gives what ``Analysis`` gives
    for the parsed tree (a test holds the two equal)."""
    # Jinja's lexer reads newlines as "\n" and drops one trailing newline (keep_trailing_newline).
    # Newlines are read before the outputs are taken out: "\r{{ x }}\n" holds two, not one "\r\n".
    source = "\n".join(_NEWLINES.split(source))
    names = _SIMPLE_OUTPUT.findall(source)
    literal = _SIMPLE_OUTPUT.sub("", source)
    if "{" in literal or "}" in literal or any(name in _NOT_NAMES for name in names):
        return None
    if source.endswith("\n"):
        literal = literal[:-1]
    return Analysis.of(frozenset(names), (), literal)


_NEWLINES = re.compile(r"\r\n|\r|\n")


@lru_cache(maxsize=2048)
def _analyse_expression(source: str) -> Analysis:
    return Analysis(_parse_expression(source))


def clear_caches() -> None:
    """Forget analysed templates (benchmarks measure a cold start with it)."""
    _analyse.cache_clear()
    _analyse_expression.cache_clear()


def _parse_expression(source: str) -> nodes.Expr:
    """What ``Environment.compile_expression`` parses, without compiling it yet."""
    try:
        parser = Parser(_ENV, source, state="variable")
        expr = parser.parse_expression()
        if not parser.stream.eos:
            raise jinja2.TemplateSyntaxError("chunk after expression", parser.stream.current.lineno, None, None)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateSyntaxProblem(exc.message or str(exc), exc.lineno) from None
    expr.set_environment(_ENV)
    return expr


# Statements a prompt or value never needs and that let a short template run for hours or reach
# other templates: refused when a flow is checked.
_REFUSED_STATEMENTS = {
    nodes.For: "{% for %} loops",
    nodes.Macro: "{% macro %}",
    nodes.CallBlock: "{% call %}",
    nodes.Include: "{% include %}",
    nodes.Import: "{% import %}",
    nodes.FromImport: "{% from ... import %}",
    nodes.Extends: "{% extends %}",
    nodes.Block: "{% block %}",
}


class Analysis:
    """What a flow check needs to know about a parsed template, found in one walk of its tree.

    * ``names``: the variables it reads and does not set itself (``{% set %}``); the same answer as
      ``jinja2.meta.find_undeclared_variables`` for flow templates, without running the code
      generator (which costs more than parsing);
    * ``unsafe``: what could reach Python internals or run away, in words (the sandbox refuses these
      at render time; finding them at check time tells the author before a call fails);
    * ``literal``: the fixed text written around the ``{{ }}``.
    """

    __slots__ = ("names", "unsafe", "literal")

    @classmethod
    def of(cls, names: frozenset[str], unsafe: tuple[str, ...], literal: str) -> Analysis:
        made = cls.__new__(cls)
        made.names, made.unsafe, made.literal = names, unsafe, literal
        return made

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Analysis) and (self.names, self.unsafe, self.literal) == (
            other.names, other.unsafe, other.literal)

    def __repr__(self) -> str:
        return f"Analysis(names={sorted(self.names)}, unsafe={self.unsafe}, literal={self.literal!r})"

    def __init__(self, tree: nodes.Node) -> None:
        loaded: list[str] = []
        stored: set[str] = set()
        unsafe: list[str] = []
        literal: list[str] = []
        stack = [tree]
        while stack:
            node = stack.pop()
            kind = type(node)
            if kind is nodes.Name:
                if node.ctx == "load":
                    loaded.append(node.name)
                else:
                    stored.add(node.name)
            elif kind is nodes.TemplateData:
                literal.append(node.data)
            elif kind is nodes.Getattr:
                if node.attr.startswith("_"):
                    unsafe.append(f"'.{node.attr}' reaches into Python internals")
                elif node.attr in ("format", "format_map"):
                    unsafe.append(f"'.{node.attr}()' is not allowed; use the format filter or ~")
            elif kind is nodes.Getitem:
                arg = node.arg
                if isinstance(arg, nodes.Const) and isinstance(arg.value, str) and arg.value.startswith("_"):
                    unsafe.append(f"'[{arg.value!r}]' reaches into Python internals")
            elif kind is nodes.Filter and node.name == "attr":
                unsafe.append("the attr filter is not allowed")
            elif kind in _REFUSED_STATEMENTS:
                unsafe.append(f"{_REFUSED_STATEMENTS[kind]} can't be used in a flow")
            # children in source order (the stack reverses them)
            stack.extend(reversed(list(node.iter_child_nodes())))
        self.names = frozenset(name for name in loaded if name not in stored)
        self.unsafe = tuple(unsafe)  # shared between templates with the same source: never mutated
        self.literal = "".join(literal)


class JinjaTemplate:
    """Implements ``engine.core.flow.Template``.

    The source is parsed (syntax checked, analysed) at once and compiled to Python on first render:
    a large flow is checked without compiling thousands of templates it may never render.
    """

    __slots__ = ("source", "_analysis", "_template")

    def __init__(self, source: str) -> None:
        self.source = source
        self._template: jinja2.Template | None = None
        self._analysis = None if self.is_constant else _analyse(source)

    @property
    def is_constant(self) -> bool:
        return "{" not in self.source

    def variables(self) -> frozenset[str]:
        return self._analysis.names if self._analysis is not None else frozenset()

    def unsafe_constructs(self) -> list[str]:
        return list(self._analysis.unsafe) if self._analysis is not None else []

    def literal_text(self) -> str:
        """The fixed text (all of it when there are no ``{{ }}``)."""
        return self._analysis.literal if self._analysis is not None else self.source

    def _compiled(self) -> jinja2.Template:
        if self._template is None:
            try:
                self._template = _ENV.from_string(self.source)
            except jinja2.TemplateSyntaxError as exc:
                raise RenderError(f"template error: {exc.message or exc}") from None
        return self._template

    def render(self, context: Mapping[str, Any]) -> str:
        if self.is_constant:
            return self.source
        template = self._compiled()
        out: list[str] = []
        size = 0
        try:
            for chunk in template.generate(dict(context)):
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
    """Implements ``engine.core.flow.Expression`` (``balance > 100 and vip``); parsed at once,
    compiled on first use."""

    __slots__ = ("source", "_analysis", "_expr")

    def __init__(self, source: str) -> None:
        self.source = source
        self._analysis = _analyse_expression(source)
        self._expr: TemplateExpression | None = None  # compiled on first use

    def _compiled(self) -> TemplateExpression:
        if self._expr is None:
            try:
                self._expr = _ENV.compile_expression(self.source, undefined_to_none=False)
            except jinja2.TemplateSyntaxError as exc:
                raise RenderError(f"condition error: {exc.message or exc}") from None
        return self._expr

    def variables(self) -> frozenset[str]:
        return self._analysis.names

    def unsafe_constructs(self) -> list[str]:
        return list(self._analysis.unsafe)

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        expr = self._compiled()
        try:
            value = expr(**dict(context))
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
