"""Template objects as the flow checker uses them: parsed at once, compiled on first use, analysed
in one walk (variables, unsafe constructs, fixed text)."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from engine.core.flow import RenderError
from engine.flowfile.templating import (
    _ENV,
    GLOBAL_NAMES,
    Analysis,
    JinjaExpression,
    JinjaTemplate,
    TemplateSyntaxProblem,
    _simple_analysis,
    clear_caches,
)


def test_constant_text_is_not_parsed_and_renders_as_is() -> None:
    template = JinjaTemplate("Press 1 for sales.")
    assert template.is_constant
    assert template.variables() == frozenset()
    assert template.unsafe_constructs() == []
    assert template.literal_text() == "Press 1 for sales."
    assert template.render({}) == "Press 1 for sales."


def test_variables_are_those_read_and_not_set_locally() -> None:
    template = JinjaTemplate("{% set greeting = 'Hi' %}{{ greeting }} {{ name | title }}, {{ range(2) | join }} "
                             "{{ account.balance }} {{ items[0] }}")
    assert template.variables() == {"name", "range", "account", "items"}
    assert "range" in GLOBAL_NAMES


def test_variables_match_jinja_meta_for_ordinary_templates() -> None:
    from jinja2 import meta

    from engine.flowfile.templating import _ENV

    for source in ("Hello {{ name }}", "{{ a ~ b }} {% if c %}{{ d }}{% else %}{{ e }}{% endif %}",
                   "{{ code | join(', ') }}", "{% set x = y %}{{ x }}{{ z }}"):
        assert JinjaTemplate(source).variables() == meta.find_undeclared_variables(_ENV.parse(source))


def test_the_fixed_text_leaves_out_the_expressions() -> None:
    assert JinjaTemplate("Your code is {{ code }}. Goodbye.").literal_text() == "Your code is . Goodbye."


def test_syntax_errors_are_raised_when_the_template_is_made() -> None:
    with pytest.raises(TemplateSyntaxProblem) as caught:
        JinjaTemplate("Hello {{ name }")
    assert caught.value.message == "unexpected '}'"
    assert caught.value.lineno == 1
    with pytest.raises(TemplateSyntaxProblem, match="chunk after expression"):
        JinjaExpression("a }}{{ b")


def test_rendering_strips_markup_from_values_and_keeps_the_sandbox() -> None:
    assert JinjaTemplate("Hi {{ name }}").render({"name": "</speech><url>http://127.0.0.1/</url>"}) == (
        "Hi /speechurlhttp://127.0.0.1//url")
    with pytest.raises(RenderError, match="not allowed in a flow"):
        JinjaTemplate("{{ ''.__class__.__mro__ }}").render({})
    with pytest.raises(RenderError, match="no value was set"):
        JinjaTemplate("{{ missing }}").render({})
    with pytest.raises(RenderError, match="longer than"):
        JinjaTemplate("{{ 'a' * 5000 }}").render({})


def test_expressions_evaluate_after_lazy_compilation() -> None:
    expression = JinjaExpression("balance | int > 100 and vip")
    assert expression.variables() == {"balance", "vip"}
    assert expression.evaluate({"balance": "150", "vip": True}) is True
    assert expression.evaluate({"balance": "50", "vip": True}) is False
    with pytest.raises(RenderError, match="no value was set"):
        JinjaExpression("nobody").evaluate({})


def test_unsafe_constructs_in_expressions() -> None:
    assert JinjaExpression("x.__class__").unsafe_constructs() == ["'.__class__' reaches into Python internals"]
    assert JinjaExpression("x | attr('a')").unsafe_constructs() == ["the attr filter is not allowed"]


def test_analysis_is_cached_by_source_and_can_be_cleared() -> None:
    clear_caches()
    first = JinjaTemplate("Hello {{ name }}")
    second = JinjaTemplate("Hello {{ name }}")
    assert first._analysis is second._analysis
    clear_caches()
    assert JinjaTemplate("Hello {{ name }}")._analysis is not first._analysis
    assert first == second and hash(first) == hash(second)


PIECES = st.sampled_from(["Hello", " ", "\n", "\r\n", "\r", ".", ",", "{{ name }}", "{{x}}", "{{ _y }}", "{{ true }}",
                          "{{ a.b }}", "{", "}", "}}", "{%", "%}", "{#", "#}", "{{ in }}", "{{ code | join }}", "#",
                          "%", "-", "{{- z -}}", "{{ n1 }}", "ünï", "\t"])


@settings(max_examples=500, deadline=None)
@given(st.lists(PIECES, max_size=10))
@example(["\r", "{{ name }}", "\n"])  # a "\r" and a "\n" apart are two newlines, not one "\r\n"
def test_the_shortcut_for_simple_templates_agrees_with_jinja(pieces: list[str]) -> None:
    source = "".join(pieces)
    simple = _simple_analysis(source)
    if simple is None:
        return  # not a simple template: Jinja parses it
    assert simple == Analysis(_ENV.parse(source))


def test_simple_prompts_take_the_shortcut() -> None:
    assert _simple_analysis("Hello {{ customer_name }}, your booking is at {{ time }}.") is not None
    assert _simple_analysis("{{ code | join(', ') }}") is None
    assert _simple_analysis("{{ true }}") is None
