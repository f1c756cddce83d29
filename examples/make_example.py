"""Make the bundled example video: examples/example.mp4 and its known events.

    .venv/bin/python examples/make_example.py

A 16 s, 640x360, 24 fps clip: a ball hits the floor every 0.5 s (120 BPM), the scene cuts
about every 4 s (every other cut sits off the impact grid, so the beat grid must bend to
reach it), a white flash at 6.3 s and a fast pan from 9.0 to 10.5 s. The events are
written next to the video (example.events.json) so the sync can be checked by eye or code.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from cuecraft.io.synthetic import example_events, write_synthetic_video

DURATION = 16.0


def main() -> None:
    here = Path(__file__).resolve().parent
    events = example_events(DURATION)
    write_synthetic_video(here / "example.mp4", duration=DURATION, fps=24, width=640, height=360, events=events,
                          seed=7, audio=True)
    (here / "example.events.json").write_text(json.dumps(asdict(events), indent=1) + "\n", encoding="utf-8")
    print(here / "example.mp4")


if __name__ == "__main__":
    main()
