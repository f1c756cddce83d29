"""Controls: beat, melody, intensity, emotion on explicit time bases."""
from cuecraft.controls.schema import CONTROL_NAMES, SCHEMA_VERSION, Controls, dumps_controls, load_controls

__all__ = ["CONTROL_NAMES", "SCHEMA_VERSION", "Controls", "dumps_controls", "load_controls"]
