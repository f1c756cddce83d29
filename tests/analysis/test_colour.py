"""Colour statistics: brightness, saturation and warmth order correctly and stay in range."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from cuecraft.analysis.colour import check_frame, colour_stats
from cuecraft.errors import ParameterError


def solid(r, g, b, shape=(36, 64)):
    return np.tile(np.array([r, g, b], np.uint8), shape + (1,))


RED, BLUE, GREY = solid(200, 30, 30), solid(30, 30, 200), solid(110, 110, 110)
YELLOW, WHITE, BLACK = solid(230, 210, 40), solid(255, 255, 255), solid(0, 0, 0)


def test_warmth_orders_red_and_yellow_over_grey_over_blue():
    warm = {name: colour_stats(f)[2] for name, f in [("red", RED), ("yellow", YELLOW), ("grey", GREY), ("blue", BLUE)]}
    assert warm["red"] > 0.5 and warm["yellow"] > 0.5
    assert warm["grey"] == pytest.approx(0.0)
    assert warm["blue"] < -0.5
    assert colour_stats(solid(255, 0, 0))[2] == pytest.approx(1.0)
    assert colour_stats(solid(0, 0, 255))[2] == pytest.approx(-1.0)


def test_saturation_is_high_for_colours_and_zero_for_grey():
    sat = [colour_stats(f)[1] for f in (RED, BLUE, GREY, WHITE)]
    assert sat[0] > 0.8 and sat[1] > 0.8
    assert sat[2] == pytest.approx(0.0) and sat[3] == pytest.approx(0.0)


def test_brightness_orders_white_over_grey_over_black():
    b = [colour_stats(f)[0] for f in (WHITE, GREY, BLACK)]
    assert b[0] == pytest.approx(1.0)
    assert b[1] == pytest.approx(110 / 255, abs=1e-6)
    assert b[2] == pytest.approx(0.0)


def test_stats_are_in_range_on_random_frames_and_accept_a_precomputed_hsv():
    rng = np.random.default_rng(0)
    for _ in range(5):
        frame = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
        b, s, w = colour_stats(frame)
        assert 0 <= b <= 1 and 0 <= s <= 1 and -1 <= w <= 1
        assert colour_stats(frame, hsv=cv2.cvtColor(frame, cv2.COLOR_RGB2HSV)) == (b, s, w)


def test_means_weight_the_whole_frame():
    half = np.concatenate([solid(255, 0, 0, (10, 20)), solid(0, 0, 255, (10, 20))])
    assert colour_stats(half)[2] == pytest.approx(0.0)


@pytest.mark.parametrize(
    "frame, text",
    [
        (np.zeros((36, 64), np.uint8), r"\(36, 64\)"),
        (np.zeros((36, 64, 4), np.uint8), r"\(36, 64, 4\)"),
        (np.zeros((36, 64, 3), np.float32), "float32"),
        (np.zeros((4, 64, 3), np.uint8), r"\(4, 64, 3\)"),
        ([[0, 0, 0]], "list"),
    ],
)
def test_bad_frames_raise_with_the_bad_value(frame, text):
    with pytest.raises(ParameterError, match=text):
        colour_stats(frame)
    with pytest.raises(ParameterError, match=text):
        check_frame(frame)
