"""Typed per-call options (erasekit.options): text parsing, Python values, ranges, choices, the errors, and
how the remover base, the registry and every built-in method use one declaration."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import numpy as np
import pytest

import erasekit
from erasekit import registry
from erasekit.methods.base import Remover
from erasekit.options import Option, OptionSet, Range
from erasekit.types import InvalidInputError, RemovalRequest

FLAG = Option("flag", bool, default=False, help="a switch")
COUNT = Option("count", int, default=3, range=Range(1, 10), help="how many")
LEVEL = Option("level", float, default=0.5, range=Range(0, 1, low_inclusive=False), help="how far")
MODE = Option("mode", str, default="fast", choices=("fast", "exact"), help="which way")
HOOK = Option("hook", Callable, nullable=True, python_only=True, help="a callable hook(step, total)")
OPTIONS = OptionSet(FLAG, COUNT, LEVEL, MODE, HOOK)


def check(option: Option, value, *, from_python: bool = True):
    return option.check(value, owner="test-method", from_python=from_python)


# ------------------------------------------------------------------------------------------------------------
# Text (CLI -O KEY=VALUE, form fields)
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("true", True), ("True", True), ("TRUE", True), ("yes", True), ("Yes", True), ("on", True), ("ON", True),
    ("1", True), (" yes ", True),
    ("false", False), ("False", False), ("FALSE", False), ("no", False), ("No", False), ("off", False),
    ("OFF", False), ("0", False),
])
def test_bool_text_accepts_the_usual_spellings_case_insensitively(text, expected):
    assert check(FLAG, text, from_python=False) is expected


@pytest.mark.parametrize("text", ["", "2", "-1", "maybe", "truee", "t", "f", "y", "n", "null", "1.0", "nope"])
def test_bool_text_refuses_anything_else_naming_the_spellings(text):
    with pytest.raises(InvalidInputError) as info:
        check(FLAG, text, from_python=False)
    assert str(info.value) == ("test-method option flag must be a boolean (true/false, yes/no, on/off, 1/0), "
                               f"got {text!r}")


@pytest.mark.parametrize("text, expected", [("3", 3), ("+4", 4), (" 10 ", 10), ("1", 1), ("007", 7)])
def test_int_text(text, expected):
    value = check(COUNT, text, from_python=False)
    assert value == expected and type(value) is int


@pytest.mark.parametrize("text", ["3.5", "3.0", "1e1", "true", "", "0x5", "three", "0", "11", "-3", "nan"])
def test_int_text_refuses_fractions_words_and_values_outside_the_range(text):
    with pytest.raises(InvalidInputError, match=r"test-method option count must be an integer in \[1, 10\]"):
        check(COUNT, text, from_python=False)


@pytest.mark.parametrize("text, expected", [("0.25", 0.25), ("1", 1.0), ("1e-3", 0.001), (" .5 ", 0.5)])
def test_float_text(text, expected):
    value = check(LEVEL, text, from_python=False)
    assert value == expected and type(value) is float


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "Infinity", "0", "-0.1", "1.5", "half",
                                  "true"])
def test_float_text_refuses_nonfinite_and_out_of_range_values(text):
    with pytest.raises(InvalidInputError, match=r"option level must be a number in \(0, 1\], got"):
        check(LEVEL, text, from_python=False)


def test_nonfinite_floats_only_where_the_option_allows_them():
    scale = Option("scale", float, default=1.0, range=Range(0, 10), allow_nonfinite=True, help="a scale")
    assert math.isnan(check(scale, "nan", from_python=False))
    assert check(scale, "inf", from_python=False) == math.inf
    assert check(scale, float("-inf")) == -math.inf
    with pytest.raises(InvalidInputError, match=r"\[0, 10\] \(or nan/inf\), got 11"):
        check(scale, 11)


def test_choices_are_exact_and_listed_in_the_error():
    assert check(MODE, "exact", from_python=False) == "exact"
    for bad in ("Exact", "exact ", "", "slow"):
        with pytest.raises(InvalidInputError) as info:
            check(MODE, bad, from_python=False)
        assert str(info.value) == f"test-method option mode must be one of fast, exact, got {bad!r}"


# ------------------------------------------------------------------------------------------------------------
# Python values (API, JSON)
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, expected", [(3, 3), (4.0, 4), (np.int64(5), 5), (np.float32(6.0), 6),
                                             ("7", 7)])
def test_int_values_take_whole_numbers_of_any_kind(value, expected):
    result = check(COUNT, value)
    assert result == expected and type(result) is int


@pytest.mark.parametrize("value", [3.5, True, False, np.bool_(True), None, [3], float("nan"), float("inf"),
                                   0, 11])
def test_int_values_refuse_fractions_bools_and_values_outside_the_range(value):
    with pytest.raises(InvalidInputError, match="option count must be an integer in"):
        check(COUNT, value)


def test_bool_values_are_real_booleans_only():
    assert check(FLAG, True) is True and check(FLAG, np.bool_(False)) is False
    for bad in (1, 0, 1.0, "maybe", None):
        with pytest.raises(InvalidInputError, match="option flag must be a boolean"):
            check(FLAG, bad)


def test_float_values():
    assert check(LEVEL, 1) == 1.0 and type(check(LEVEL, 1)) is float
    assert check(LEVEL, np.float32(0.25)) == 0.25
    for bad in (True, float("nan"), float("inf"), 0.0, 1.0000001, "x", None):
        with pytest.raises(InvalidInputError, match="option level must be a number"):
            check(LEVEL, bad)


def test_string_options_refuse_other_types():
    with pytest.raises(InvalidInputError, match="option mode must be one of fast, exact, got 1"):
        check(MODE, 1)


@pytest.mark.parametrize("range_, inside, outside, text", [
    (Range(1, 1000), [1, 500, 1000], [0, 1001, 0.999], "[1, 1000]"),
    (Range(0, 1, low_inclusive=False), [1e-9, 1], [0, 1.0001], "(0, 1]"),
    (Range(0, 1000, low_inclusive=False, high_inclusive=False), [0.4, 999.9], [0, 1000], "(0, 1000)"),
    (Range(0, 2.5, high_inclusive=False), [0, 2.49], [2.5, -0.1], "[0, 2.5)"),
])
def test_range_ends_and_notation(range_, inside, outside, text):
    assert all(v in range_ for v in inside)
    assert not any(v in range_ for v in outside)
    assert str(range_) == text


# ------------------------------------------------------------------------------------------------------------
# Sets: unknown names, python-only options, defaults
# ------------------------------------------------------------------------------------------------------------
def test_unknown_options_are_refused_listing_what_the_method_takes():
    with pytest.raises(InvalidInputError) as info:
        OPTIONS.validate({"count": 2, "stepz": 1, "bogus": 2}, owner="test-method")
    assert str(info.value) == ("method 'test-method' does not take option(s): bogus, stepz; it takes: flag, "
                               "count, level, mode, hook")
    with pytest.raises(InvalidInputError) as info:  # text and network input never hear of python-only ones
        OPTIONS.validate({"x": "1"}, owner="test-method", from_python=False)
    assert str(info.value).endswith("it takes: flag, count, level, mode")
    with pytest.raises(InvalidInputError, match="it takes no per-call options"):
        OptionSet().validate({"x": 1}, owner="test-method")


def test_python_only_options_cannot_come_from_text_or_json():
    hook = print
    assert OPTIONS.validate({"hook": hook}, owner="m") == {"hook": hook}
    with pytest.raises(InvalidInputError, match="m option hook can only be set from Python"):
        OPTIONS.validate({"hook": "print"}, owner="m", from_python=False)
    with pytest.raises(InvalidInputError, match="option hook must be a callable or null, got 3"):
        OPTIONS.validate({"hook": 3}, owner="m")


def test_validate_types_the_given_options_and_resolve_fills_the_defaults():
    assert OPTIONS.validate({"count": "4", "flag": "no"}, owner="m") == {"count": 4, "flag": False}
    assert OPTIONS.resolve({"level": "1"}, owner="m") == {"flag": False, "count": 3, "level": 1.0,
                                                          "mode": "fast", "hook": None}


def test_with_defaults_checks_the_bound_value_and_replace_narrows_a_range():
    bound = OPTIONS.with_defaults(owner="m", count="7", mode="exact")
    assert bound.defaults()["count"] == 7 and bound.defaults()["mode"] == "exact"
    assert OPTIONS.defaults()["count"] == 3  # the class's declaration is untouched
    with pytest.raises(InvalidInputError, match=r"m option count must be an integer in \[1, 10\], got 0"):
        OPTIONS.with_defaults(owner="m", count=0)
    narrow = OPTIONS.replace(count={"range": Range(1, 5)})
    with pytest.raises(InvalidInputError, match=r"\[1, 5\], got 6"):
        narrow.validate({"count": 6}, owner="m")
    with pytest.raises(KeyError):
        OPTIONS.replace(nothing={"default": 1})


@pytest.mark.parametrize("make, message", [
    (lambda: Option("n", int, help="h"), "needs a range"),
    (lambda: Option("n", int, default=0, range=Range(1, 3), help="h"), "declared default"),
    (lambda: Option("s", int, choices=("a",), range=Range(0, 1), help="h"), "choices apply to strings"),
    (lambda: Option("f", Callable, help="h"), "python_only"),
    (lambda: Option("l", list, help="h"), "unsupported type"),
    (lambda: OptionSet(FLAG, FLAG), "declared twice"),
])
def test_bad_declarations_fail_when_the_class_is_defined(make, message):
    with pytest.raises(TypeError, match=message):
        make()


def test_describe_is_json_ready():
    assert COUNT.describe() == {"name": "count", "type": "int", "default": 3, "default_note": None,
                                "allowed": "an integer in [1, 10]", "range": "[1, 10]", "choices": None,
                                "help": "how many"}
    assert [o["name"] for o in OPTIONS.describe(public=True)] == ["flag", "count", "level", "mode"]


# ------------------------------------------------------------------------------------------------------------
# The remover base validates once and hands the method typed, complete options
# ------------------------------------------------------------------------------------------------------------
class RecordingRemover(Remover):
    name: ClassVar[str] = "recording"
    call_options = OptionSet(FLAG, COUNT)

    def __init__(self):
        self.seen: list[dict] = []

    def inpaint(self, image, mask, request):
        self.seen.append(dict(request.options))
        return image, None


def test_the_base_hands_inpaint_typed_values_with_defaults_and_records_what_was_given():
    remover = RecordingRemover()
    image = np.zeros((16, 16, 3), np.uint8)
    mask = np.zeros((16, 16), np.float32)
    mask[4:8, 4:8] = 1
    result = remover(RemovalRequest(image, mask, options={"count": "5"}))
    assert remover.seen == [{"flag": False, "count": 5}]
    assert result.metadata["options"] == {"count": 5}
    with pytest.raises(InvalidInputError, match="recording option flag must be a boolean"):
        remover(RemovalRequest(image, mask, options={"flag": "maybe"}))
    with pytest.raises(InvalidInputError, match="'recording' takes no prompt"):
        remover(RemovalRequest(image, mask, prompt="a wall"))
    assert len(remover.seen) == 1  # refused before any work


# ------------------------------------------------------------------------------------------------------------
# Every built-in method's declaration
# ------------------------------------------------------------------------------------------------------------
def _declared():
    return {name: registry.get_method(name).call_options for name in registry.method_names()}


def test_every_method_declares_its_options_and_every_number_is_bounded():
    for name, declared in _declared().items():
        assert declared is not None, name
        for option in declared.values():
            assert option.help, (name, option.name)
            if option.type in (int, float):
                assert option.range is not None and math.isfinite(option.range.high), (name, option.name)


@pytest.mark.parametrize("name", ["sd15-inpaint", "sd2-inpaint", "sdxl-inpaint", "flux-fill"])
def test_diffusion_sampling_bounds(name):
    declared = registry.get_method(name).call_options
    assert str(declared["steps"].range) == "[1, 1000]"
    assert str(declared["guidance"].range) == "[0, 100]"
    assert str(declared["strength"].range) == "(0, 1]"
    assert declared["progress"].python_only


def test_osor_declares_timestep_blend_paste_back_and_flux_guidance():
    sdxl = registry.get_method("osor-sdxl").call_options
    flux = registry.get_method("osor-flux").call_options
    assert list(sdxl) == ["timestep", "blend", "soft_mask", "paste_back"]
    assert list(flux) == ["timestep", "blend", "soft_mask", "paste_back", "guidance"]
    assert sdxl["soft_mask"].default is True and sdxl["soft_mask"].type is bool
    assert str(sdxl["timestep"].range) == "[0, 999]" and sdxl["timestep"].type is int
    assert str(flux["timestep"].range) == "(0, 1000)" and flux["timestep"].type is float
    # The default timestep comes from the weights: bound when the remover loads them.
    assert sdxl["timestep"].default is None and "weights" in sdxl["timestep"].default_note
    assert sdxl["blend"].choices == ("alpha", "mask") and sdxl["paste_back"].default is True


@pytest.mark.parametrize("method", ["patchmatch", "telea", "ns"])
def test_weight_free_methods_refuse_a_prompt_like_an_unknown_option(method):
    image = np.zeros((32, 32, 3), np.uint8)
    mask = np.zeros((32, 32), np.float32)
    mask[8:16, 8:16] = 1
    with pytest.raises(InvalidInputError, match=f"method '{method}' takes no prompt"):
        erasekit.remove(image, mask, method=method, prompt="a brick wall")


def test_split_options_routes_by_declaration_and_checks_before_loading():
    spec = registry.get_method("patchmatch")
    # patch_size is both a factory argument and a per-call option: per call wins, so nothing reloads for it.
    assert registry.split_options(spec, {"patch_size": "5"}) == ({}, {"patch_size": 5})
    sd15 = registry.get_method("sd15-inpaint")
    assert registry.split_options(sd15, {"device": "cpu", "steps": "4"}) == ({"device": "cpu"}, {"steps": 4})
    with pytest.raises(InvalidInputError, match=r"steps must be an integer in \[1, 1000\], got 0"):
        registry.split_options(sd15, {"model": "/nowhere", "steps": 0})
    with pytest.raises(InvalidInputError, match="does not take option"):
        registry.split_options(spec, {"steps": 4})
