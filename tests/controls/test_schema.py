import json
import math

import numpy as np
import pytest

from cuecraft.controls.schema import Controls, dumps_controls, load_controls
from cuecraft.errors import ControlsError


def full_controls():
    return Controls(
        beat=[[0.0, 0], [0.5, 1], [1.0, 2], [1.5, 3], [2.0, 0]],
        melody=[[0.0, 0], [1.0, math.nan], [1.5, 7]],
        intensity=[[0.0, -30.0], [2.0, -6.0]],
        emotion=[[0.0, 0.5, -0.25], [2.0, -1.0, 1.0]],
        duration=2.5, source={"beat": "video"})


def write(tmp_path, data, name="c.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_round_trip_through_file(tmp_path):
    controls = full_controls()
    path = write(tmp_path, dumps_controls(controls))
    back = load_controls(path)
    assert back.present == ("beat", "melody", "intensity", "emotion")
    for name in back.present:
        np.testing.assert_array_equal(np.isnan(getattr(back, name)), np.isnan(getattr(controls, name)))
        np.testing.assert_allclose(np.nan_to_num(getattr(back, name)), np.nan_to_num(getattr(controls, name)))
    assert back.duration == 2.5 and back.source == {"beat": "video"}
    assert json.loads(path.read_text())["melody"][1] == [1.0, None]


def test_any_subset_is_valid(tmp_path):
    back = load_controls(write(tmp_path, {"version": 1, "intensity": [[0, -20]]}))
    assert back.present == ("intensity",)


@pytest.mark.parametrize("data, needle", [
    ("{not json", "bad JSON"),
    ('{"version": 1, "intensity": [[0, NaN]]}', "NaN"),
    ('{"version": 1, "intensity": [[0, Infinity]]}', "Infinity"),
    ({"version": 2, "intensity": [[0, -20]]}, "version = 2"),
    ({"intensity": [[0, -20]]}, "version = None"),
    ({"version": 1, "intensity": [[0, -20], [1, 5]]}, "intensity[1].dB = 5.0"),
    ({"version": 1, "intensity": [[0, -20], [0, -10]]}, "intensity[1].t = 0.0"),
    ({"version": 1, "intensity": [[1, -20], [0.5, -10]]}, "intensity[1].t = 0.5"),
    ({"version": 1, "beat": [[-1, 0]]}, "beat[0].t = -1.0"),
    ({"version": 1, "beat": [[0, 4]]}, "beat[0].position_in_bar = 4.0"),
    ({"version": 1, "melody": [[0, 12]]}, "melody[0].pitch_class = 12.0"),
    ({"version": 1, "emotion": [[0, 0.2, 1.5]]}, "emotion[0].arousal = 1.5"),
    ({"version": 1, "emotion": [[0, 0.2]]}, "emotion[0]"),
    ({"version": 1, "emotion": [[0, "x", 0]]}, "emotion[0].valence = 'x'"),
    ({"version": 1, "duration": 1.0, "intensity": [[2, -20]]}, "intensity[0].t = 2.0"),
    ({"version": 1, "tempo": 120}, "unknown field 'tempo'"),
    ({"version": 1, "intensity": []}, "empty"),
    ([1, 2], "JSON object"),
])
def test_bad_files_name_field_index_and_value(tmp_path, data, needle):
    path = write(tmp_path, data)
    with pytest.raises(ControlsError) as err:
        load_controls(path)
    message = str(err.value)
    assert needle in message
    assert str(path) in message and "\n" not in message


def test_missing_file(tmp_path):
    with pytest.raises(ControlsError, match="no such file"):
        load_controls(tmp_path / "nope.json")


def test_filled_from_keeps_given_and_takes_missing():
    given = Controls(intensity=[[0, -10.0]], source={"intensity": "file"})
    fallback = full_controls()
    merged = given.filled_from(fallback)
    assert merged.present == ("beat", "melody", "intensity", "emotion")
    assert merged.intensity[0, 1] == -10.0
    assert merged.source["intensity"] == "file" and merged.source["beat"] == "video"


def test_spliced_with_switches_to_fallback_after_reference_ends():
    ref = Controls(beat=[[0, 0], [0.4, 1], [0.8, 2]], intensity=[[0, -5.0], [0.8, -5.0]])
    video = Controls(beat=[[t, i % 4] for i, t in enumerate(np.arange(0, 3, 0.5))],
                     intensity=[[0, -30.0], [3, -30.0]], emotion=[[0, 0.1, 0.1]])
    spliced = ref.spliced_with(video, until=1.0)
    beats = spliced.beat[:, 0]
    np.testing.assert_allclose(beats[:3], [0, 0.4, 0.8])
    assert beats[3] >= 1.0 and np.all(np.diff(beats) > 0.2)  # no stutter at the seam
    assert spliced.intensity[-1, 1] == -30.0 and spliced.intensity[0, 1] == -5.0
    assert spliced.emotion is not None  # only the video has it
