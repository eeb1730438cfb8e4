"""``form_encode``: the text ``urlencode`` makes, whatever the values, cached or not."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

from hypothesis import given
from hypothesis import strategies as st

from engine.providers.base import form_encode

pairs = st.lists(st.tuples(st.text(max_size=12), st.text(max_size=60)), max_size=6)


@given(pairs, pairs)
def test_form_encode_is_urlencode(cached, uncached):
    assert form_encode(cached, uncached=uncached) == urlencode([*cached, *uncached])
    assert form_encode(cached) == urlencode(cached)  # a second time: from the cache


def test_prompts_survive_the_round_trip():
    prompt = '<speech language="en-US" gender="female">For sales, press 1 & hold; 100% sure?</speech>'
    text = form_encode([("msg", prompt), ("tag", "main-menu")], uncached=[("access_token", "t+k/=")])
    assert parse_qsl(text) == [("msg", prompt), ("tag", "main-menu"), ("access_token", "t+k/=")]
