"""The Registry contract: lookup, aliases, normalization, specs and error messages."""

import pytest

from trainlab.registry import Entry, Registry, normalize_name


@pytest.fixture
def reg():
    r = Registry("widget_test")
    r.add("leaky_relu", lambda slope=0.01: ("leaky", slope), description="d", reference="r",
          aliases=("lrelu",), defaults={"slope": 0.1}, meta={"gain": 1.4})
    r.add("tanh", lambda: "tanh")
    return r


def test_normalize_name():
    assert normalize_name(" Leaky-ReLU ") == "leaky_relu"
    assert normalize_name("LEAKY RELU") == "leaky_relu"


@pytest.mark.parametrize("name", ["leaky_relu", "Leaky-ReLU", "LEAKY RELU", "lrelu", "LReLU"])
def test_lookup_normalizes_and_resolves_aliases(reg, name):
    assert reg.get(name).name == "leaky_relu"
    assert name in reg


def test_defaults_are_merged_under_caller_kwargs(reg):
    assert reg.build("leaky_relu") == ("leaky", 0.1)
    assert reg.build("leaky_relu", slope=0.2) == ("leaky", 0.2)
    assert reg.build(("leaky_relu", {"slope": 0.3})) == ("leaky", 0.3)
    assert reg.build({"name": "lrelu", "slope": 0.4}) == ("leaky", 0.4)
    assert reg.build(["leaky_relu", {"slope": 0.5}]) == ("leaky", 0.5)  # from JSON/YAML


def test_callables_pass_through(reg):
    assert reg.build(lambda x: x * 2, 3) == 6


def test_unknown_name_lists_close_matches_and_all(reg):
    msg = r"Unknown widget_test 'leaky_rel'\. Did you mean 'leaky_relu'"
    with pytest.raises(ValueError, match=msg) as e:
        reg.get("leaky_rel")
    assert "Available: leaky_relu, tanh." in str(e.value)


def test_unknown_name_without_close_match(reg):
    with pytest.raises(ValueError, match=r"Unknown widget_test 'zzz'\. Available"):
        reg.get("zzz")


def test_mapping_spec_needs_name(reg):
    with pytest.raises(ValueError, match=r"needs a 'name' key\. Received: \{'slope': 1\}"):
        reg.build({"slope": 1})


def test_bad_spec_type(reg):
    with pytest.raises(TypeError, match="Cannot build a widget_test from 3"):
        reg.build(3)
    with pytest.raises(TypeError, match="name must be a string. Received: 3"):
        reg.get(3)


def test_duplicate_names_rejected(reg):
    with pytest.raises(ValueError, match="'tanh' is already registered"):
        reg.add("TANH", lambda: None)
    with pytest.raises(ValueError, match="'lrelu' is already registered"):
        reg.add("other", lambda: None, aliases=("lrelu",))


def test_entries_are_frozen(reg):
    e = reg.get("tanh")
    assert isinstance(e, Entry)
    with pytest.raises(AttributeError):
        e.name = "x"
    with pytest.raises(TypeError):
        reg.get("leaky_relu").meta["gain"] = 2.0


def test_iteration_len_names(reg):
    assert reg.names() == ["leaky_relu", "tanh"]
    assert [e.name for e in reg] == ["leaky_relu", "tanh"]
    assert len(reg) == 2


def test_family_lookup(reg):
    assert Registry.family_of("Widget-Test") is reg
    with pytest.raises(ValueError, match="Unknown family 'widget_tst'. Did you mean 'widget_test'"):
        Registry.family_of("widget_tst")
