"""Relevance as a ``cuecraft evaluate`` metric group: GVMGen's two scores for every evaluated clip.

The relevance model (:mod:`cuecraft.evaluation.relevance`, trained by ``cuecraft evaluate
--train-relevance``) scores the first ``max_seconds`` seconds of each clip (30 by default), with
video features from the embedded visual encoder and music features from the clip's music.

How the two scores are presented
--------------------------------
``relevance_local`` (per clip)
    The clip's own local temporal alignment: the mean diagonal of the video→music attention
    map, in [0, 1]; uniform attention over ``T`` seconds gives ``1 / T``. It does not depend on
    the other clips.
``relevance_global_b{B}`` (per clip)
    The probability that the clip's video picks its own music among ``B`` candidates: its own
    and the music of ``B - 1`` other evaluated clips (consecutive in report order; the last
    batch borrows candidates from earlier clips, so every video has exactly ``B``). Chance is
    ``1 / B``. ``B = min(batch_size, clips scored)`` and is in the key, because the value
    depends on it and on *which* clips were evaluated together: compare reports over the same
    clips only. With a single clip there is nothing to choose from, and the key is absent.
Aggregate
    The report's ordinary mean ± std over clips. The mean of the per-clip values is exactly
    GVMGen's batch-level score (:func:`cuecraft.evaluation.relevance.relevance_metrics`).
"""
from __future__ import annotations

import os
from pathlib import Path

from cuecraft.errors import MediaError, ParameterError

DEFAULT_BATCH = 16  # GVMGen's candidate set
# What other video feature kinds would need; cuecraft evaluate computes the embedded ones only.
_NEEDS = {"clip+embedded": "a local CLIP folder", "clip+videomae": "local CLIP and VideoMAE folders"}


def weights_file(path: str | os.PathLike) -> Path:
    """``path`` itself, or ``path/model.safetensors`` for a ``--train-relevance`` run folder."""
    path = Path(path)
    return path / "model.safetensors" if path.is_dir() else path


def definitions(batch: int | None) -> dict[str, str]:
    """One line per key the group adds (``batch``: the ``B`` used, None with a single clip)."""
    out = {"relevance_local": "GVMGen local temporal alignment: mean over the clip's seconds (the model's window) "
                              "of the diagonal of the video->music attention map; uniform attention gives 1/T"}
    if batch is not None:
        others = f"{batch - 1} other evaluated clip{'s' if batch > 2 else ''}"
        out = {f"relevance_global_b{batch}": f"GVMGen global relevance: the probability (softmax of the model's "
                                             f"video-music similarities) that the clip's video picks its own music "
                                             f"among {batch}: its own and that of {others}; chance {1 / batch:.3f}; "
                                             "depends on which clips are evaluated together",
               **out}
    return out


class RelevanceGroup:
    """Collects each clip's features during ``evaluate``, then scores them all at once.

    Parameters
    ----------
    weights : a relevance model file (or its ``--train-relevance`` run folder)
    batch_size : candidates per video for the global score (at least 2)

    Raises
    ------
    MediaError
        Naming the file, if it is missing, not a relevance model, or trained on video
        features that ``cuecraft evaluate`` cannot compute.
    ParameterError
        For a bad ``batch_size``.
    """

    def __init__(self, weights: str | os.PathLike, *, batch_size: int = DEFAULT_BATCH):
        from cuecraft.evaluation.relevance import MUSIC_DIM, load_relevance
        from cuecraft.models.visual import build_visual_encoder
        from cuecraft.training.checkpoints import read_metadata

        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 2:
            raise ParameterError(f"relevance batch size = {batch_size!r}: must be an integer >= 2")
        self.path, self.batch_size = weights_file(weights), batch_size
        self.encoder = build_visual_encoder("embedded")
        try:
            kind = read_metadata(self.path).get("video_features")
            if kind is not None and kind != self.encoder.name:
                needs = _NEEDS.get(kind, "an encoder cuecraft evaluate does not have")
                raise MediaError(f"checkpoint '{self.path}': trained on {kind!r} video features, which would need "
                                 f"{needs}; cuecraft evaluate computes 'embedded' features (train with "
                                 "--train-relevance)")
            dims = self.encoder.dims
            self.model = load_relevance(self.path, video_dim=dims.frame + dims.context, music_dim=MUSIC_DIM,
                                        video_kind=self.encoder.name)
        except MediaError as exc:
            raise MediaError(f"relevance weights: {exc}") from None
        self._entries: list[dict] = []
        self._video: list = []
        self._music: list = []
        self.batch: int | None = None

    def add(self, entry: dict, video: Path, audio, *, sr: int) -> None:
        """Encode one clip (``audio``: its music, as long as the video); scored by :meth:`finish`.

        Raises
        ------
        MediaError, ParameterError
            If the video cannot be encoded or the audio is invalid; the clip then has no score.
        """
        from cuecraft.evaluation.relevance import music_features, video_features

        v = video_features(self.encoder.encode(video))  # [T, Dv]
        m = music_features(audio, sr=sr)  # [T', Dm]
        self._entries.append(entry)
        self._video.append(v)
        self._music.append(m)

    def finish(self) -> None:
        """Score every added clip together and add the keys to each entry's ``metrics``."""
        from cuecraft.evaluation.relevance import relevance_scores

        if not self._entries:
            return
        relevance, local, batch = relevance_scores(self.model, self._video, self._music, batch_size=self.batch_size)
        self.batch = batch if len(self._entries) >= 2 else None
        for entry, g, loc in zip(self._entries, relevance.tolist(), local.tolist(), strict=True):
            if self.batch is not None:
                entry["metrics"][f"relevance_global_b{batch}"] = float(g)
            entry["metrics"]["relevance_local"] = float(loc)

    def settings(self) -> dict:
        """What the report's ``settings.relevance`` records."""
        from cuecraft.evaluation.relevance import MUSIC_FEATURES

        return {"weights": str(self.path), "batch_size": self.batch, "batch_size_requested": self.batch_size,
                "max_seconds": self.model.config["max_seconds"], "video_features": self.encoder.name,
                "music_features": MUSIC_FEATURES, "clips_scored": len(self._entries)}
