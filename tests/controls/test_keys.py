import numpy as np
import pytest

from cuecraft.controls.keys import key_from_melody, mode_strength
from cuecraft.errors import ParameterError


def test_mode_strength_major_minor_flat():
    major, minor = np.zeros(12), np.zeros(12)
    major[[0, 2, 4, 5, 7, 9, 11]] = 1
    major[[0, 4, 7]] += 1
    minor[[0, 2, 3, 5, 7, 8, 10]] = 1
    minor[[0, 3, 7]] += 1
    m = mode_strength(np.stack([major, minor, np.ones(12), np.zeros(12)]))
    assert m[0] > 0.1 and m[1] < -0.1 and m[2] == 0 and m[3] == 0
    with pytest.raises(ParameterError, match="12 pitch classes"):
        mode_strength(np.ones(11))


def test_key_from_melody_direct():
    g_major = np.zeros(12)
    g_major[[7, 9, 11, 0, 2, 4, 6]] = 1.0
    g_major[[7, 11, 2]] += 2.0
    assert key_from_melody(g_major) == (7, "major")
    d_minor = np.zeros(12)
    d_minor[[2, 4, 5, 7, 9, 10, 0]] = 1.0
    d_minor[[2, 5, 9]] += 2.0
    assert key_from_melody(d_minor, mode="minor") == (2, "minor")


def test_key_from_melody_rejects_empty_histogram():
    with pytest.raises(ParameterError, match="pitch_class_weights"):
        key_from_melody(np.zeros(12))
