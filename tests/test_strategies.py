"""The Hypothesis strategies: valid draws, validated arguments."""

import pytest
from hypothesis import given, settings
from hypothesis.errors import InvalidArgument

from pytest_engineparity import strategies as eps
from pytest_engineparity.types import GenerationRequest


@given(eps.requests(max_tokens=(1, 8)))
@settings(max_examples=60, deadline=None)
def test_requests_are_valid(req):
    assert isinstance(req, GenerationRequest)
    assert 1 <= req.max_tokens <= 8 and 0 <= req.min_tokens <= req.max_tokens
    assert req.greedy and all(s for s in req.stop)
    text = req.prompt if req.prompt is not None else req.messages[0]["content"]
    assert text.strip()


@given(eps.prompts("unicode", max_size=50))
@settings(max_examples=60)
def test_unicode_prompts_are_encodable(text):
    text.encode("utf-8")  # no lone surrogates
    assert "\x00" not in text and 1 <= len(text) <= 50


@given(eps.sampling_params(greedy=False))
@settings(max_examples=40)
def test_sampled_params_build_requests(kw):
    GenerationRequest(prompt="x", **kw)


def test_prompts_near_length_hits_the_target():
    tokenize = str.split  # one token per word
    for n in (10, 50, 200):
        @given(eps.prompts_near_length(tokenize, n, tolerance=1))
        @settings(max_examples=5, deadline=None)
        def check(text):
            assert abs(len(tokenize(text)) - n) <= 1
        check()


@pytest.mark.parametrize("make", [
    lambda: eps.prompts("poetry"),
    lambda: eps.prompts(min_size=0),
    lambda: eps.sampling_params(max_tokens=(5, 1)),
    lambda: eps.stop_strings(max_count=-1),
    lambda: eps.requests(chat="yes"),
    lambda: eps.prompts_near_length("not callable", 10),
    lambda: eps.prompts_near_length(str.split, 0),
])
def test_bad_arguments_are_rejected(make):
    with pytest.raises(InvalidArgument):
        make().example()
