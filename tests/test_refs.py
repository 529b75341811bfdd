"""The ref grammar shared by prompts and models: name, name/3, name@alias, URIs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from llmops_magics.core.registry.refs import Ref, check_alias_name, parse_ref
from llmops_magics.errors import BadInput

NAMES = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,20}", fullmatch=True).filter(lambda s: s not in (".", ".."))
ALIASES = st.from_regex(r"[A-Za-z0-9_\-]{1,20}", fullmatch=True).filter(lambda s: s.lower() != "latest")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("summarize", Ref("summarize")),
        ("summarize/3", Ref("summarize", version=3)),
        ("summarize@production", Ref("summarize", alias="production")),
        ("  chat.v2@champion ", Ref("chat.v2", alias="champion")),
        ("prompts:/summarize/4", Ref("summarize", version=4, kind="prompt")),
        ("prompts:/summarize@production", Ref("summarize", alias="production", kind="prompt")),
        ("models:/chat@champion", Ref("chat", alias="champion", kind="model")),
        ("chat@latest", Ref("chat")),
        ("chat/latest", Ref("chat")),
    ],
)
def test_parses_every_documented_form(text, expected):
    assert parse_ref(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "a b", "chat/0", "chat/x", "chat@", "chat@a@b", "/abs/path", "./model", "chat/2/3", "prompts:/", "..", "x\ny"],
)
def test_malformed_refs_get_one_line_with_the_accepted_forms(text):
    with pytest.raises(BadInput) as err:
        parse_ref(text)
    message = str(err.value)
    assert "\n" not in message
    assert "NAME/VERSION" in message or "versions start at 1" in message


def test_a_uri_of_the_other_kind_is_refused():
    with pytest.raises(BadInput, match="is a prompt ref, but a model ref is needed"):
        parse_ref("prompts:/summarize/1", "model")
    assert parse_ref("summarize", "prompt").kind == "prompt"


@pytest.mark.parametrize("alias", ["latest", "LATEST", "v3", "V12"])
def test_aliases_mlflow_reserves_are_refused_before_any_call(alias):
    with pytest.raises(BadInput, match="reserved by MLflow"):
        check_alias_name(alias)


@given(
    NAMES,
    st.one_of(st.none(), st.integers(1, 10**6)),
    st.one_of(st.none(), ALIASES),
    st.sampled_from([None, "prompt", "model"]),
)
def test_str_and_uri_round_trip(name, version, alias, kind):
    if version is not None and alias is not None:
        alias = None
    ref = Ref(name, version, alias, kind)
    assert parse_ref(str(ref), kind) == ref
    assert parse_ref(ref.uri) == Ref(name, version, alias, kind)


@hsettings(max_examples=400)
@given(st.text(max_size=40))
def test_any_text_is_a_ref_or_one_clear_line(text):
    try:
        ref = parse_ref(text)
    except BadInput as e:
        assert "\n" not in str(e)
    else:
        assert ref.name and (ref.version is None or ref.version >= 1)
        assert ref.version is None or ref.alias is None
