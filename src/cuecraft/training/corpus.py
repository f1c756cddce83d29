"""The symbolic training set: music21's bundled corpus, tokenised, with per-token controls.

``build_corpus`` streams the corpus files (a progress bar, ``workers`` processes), turns
each piece into a two-role score (:mod:`music21_pieces`), tokenises it, reads its controls
at every token (:mod:`piece_controls`) and caches the result per source file, so a re-run
reuses everything whose file, tokenizer and options are unchanged. It then writes one
shard per split and a ``manifest.json`` whose ``content_hash`` (sha256 over the shards'
arrays) a checkpoint records.

Layout of ``out_dir``::

    manifest.json
    train.npz  validation.npz  test.npz     (tokens, offsets, pitch_class, intensity, emotion)
    cache/<collection>/<file>.<key>.npz     (the same arrays per source file, plus statuses)

Controls are stored raw (pitch class, dB, valence/arousal: 7 bytes a token); the beat
features derive from the tokens, and :class:`TokenDataset` builds the model features per
crop, after augmentation.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cuecraft.errors import OutputError, ParameterError
from cuecraft.training.music21_pieces import DEFAULT_COLLECTIONS
from cuecraft.training.piece_controls import REST

# Bump BUILD_VERSION when the conversion or the stored arrays change: it keys every cache file.
FORMAT, BUILD_VERSION = "cuecraft-corpus", 1
SPLITS = ("train", "validation", "test")
ARRAYS = ("tokens", "offsets", "pitch_class", "intensity", "emotion")
MIN_TOKENS = 16  # BOS, a bar and a couple of notes: shorter pieces teach nothing


def piece_split(piece_id: str) -> str:
    """``"train"``, ``"validation"`` or ``"test"`` (about 90/5/5) from a hash of the piece id."""
    bucket = int(hashlib.sha256(piece_id.encode()).hexdigest()[:8], 16) % 100
    return "train" if bucket < 90 else "validation" if bucket < 95 else "test"


@dataclass(frozen=True)
class Manifest:
    """A built corpus: ``data`` is ``manifest.json`` (pieces, splits, counts, hashes)."""

    root: Path
    data: dict

    @property
    def content_hash(self) -> str:
        return self.data["content_hash"]

    @property
    def tokenizer(self) -> str:
        """Fingerprint of the tokenizer that wrote the shards."""
        return self.data["tokenizer"]

    @property
    def pieces(self) -> list[dict]:
        return self.data["pieces"]

    def shard(self, split: str) -> Path:
        if split not in SPLITS:
            raise ParameterError(f"split = {split!r}: must be one of {', '.join(SPLITS)}")
        return self.root / f"{split}.npz"


def load_manifest(root: str | os.PathLike) -> Manifest:
    """The manifest of a corpus built by :func:`build_corpus`, with its shards checked to exist."""
    from cuecraft.errors import MediaError

    root = Path(root)
    path = root / "manifest.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MediaError(f"corpus manifest '{path}': cannot read it ({exc}); build it with build_corpus") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != BUILD_VERSION:
        raise MediaError(f"corpus manifest '{path}': not a {FORMAT} v{BUILD_VERSION} manifest")
    manifest = Manifest(root=root, data=data)
    for split in SPLITS:
        if not manifest.shard(split).is_file():
            raise MediaError(f"corpus '{root}': shard '{manifest.shard(split).name}' is missing")
    return manifest


def content_hash(arrays_by_split: dict[str, dict[str, np.ndarray]], ids_by_split: dict[str, list[str]]) -> str:
    """sha256 over every split's arrays (name, dtype, shape, bytes) and piece ids, in a fixed order."""
    h = hashlib.sha256()
    for split in SPLITS:
        h.update(json.dumps([split, ids_by_split[split]]).encode())
        for name in ARRAYS:
            arr = np.ascontiguousarray(arrays_by_split[split][name])
            h.update(f"{name}:{arr.dtype.str}:{arr.shape}".encode())
            h.update(arr.tobytes())
    return h.hexdigest()


# -- per-file conversion (runs in worker processes) ---------------------------------------
_TOKENIZER = None


def default_tokenizer():
    """One MusicTokenizer per process (building it costs about a second)."""
    global _TOKENIZER
    if _TOKENIZER is None:
        from cuecraft.models.tokenizer import MusicTokenizer

        _TOKENIZER = MusicTokenizer()
    return _TOKENIZER


def _convert_file(task: tuple[str, str, str, int | None, str]) -> str:
    """Convert one corpus file into its cache npz; returns the cache path."""
    import warnings

    from cuecraft.io.files import atomic_path
    from cuecraft.training import music21_pieces as m21
    from cuecraft.training.piece_controls import piece_control_values

    _, path, rel, max_pieces, cache = task
    tok = default_tokenizer()
    statuses, meta, chunks = [], [], []
    try:
        scores = m21.parse_file(Path(path))
    except Exception as exc:  # noqa: BLE001 - music21's parsers raise anything on a bad file
        scores, statuses = [], [f"parse: {type(exc).__name__}"]
    for index, m21score in enumerate(scores[:max_pieces]):
        try:
            piece = m21.to_piece(m21score)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ids = tok.encode(piece.score)
            if len(ids) < MIN_TOKENS:
                raise m21.SkipPiece("short")
            pm = tok.decode(ids, bpm=piece.bpm)
            values = piece_control_values(pm, ids, tokenizer=tok)
        except m21.SkipPiece as skip:
            statuses.append(skip.args[0])
            continue
        except Exception as exc:  # noqa: BLE001 - one odd piece must not stop the build
            statuses.append(f"error: {type(exc).__name__}")
            continue
        statuses.append("ok")
        meta.append({"id": f"{rel}#{index}", "bpm": piece.bpm, "seconds": round(float(pm.get_end_time()), 3),
                     "chord_symbols": piece.chord_symbols})
        pc = np.where(np.isnan(values.pitch_class), REST, values.pitch_class).astype(np.int8)
        chunks.append((ids.astype(np.int16), pc, values.intensity_db.astype(np.float16),
                       values.emotion.astype(np.float16)))
    arrays = _concat(chunks)
    Path(cache).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays, meta=np.array(json.dumps({"pieces": meta, "statuses": statuses})))
    return cache


def _concat(chunks: list[tuple]) -> dict[str, np.ndarray]:
    lengths = [len(c[0]) for c in chunks]
    return {"tokens": np.concatenate([c[0] for c in chunks]) if chunks else np.zeros(0, np.int16),
            "offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            "pitch_class": np.concatenate([c[1] for c in chunks]) if chunks else np.zeros(0, np.int8),
            "intensity": np.concatenate([c[2] for c in chunks]) if chunks else np.zeros(0, np.float16),
            "emotion": np.concatenate([c[3] for c in chunks]) if chunks else np.zeros((0, 2), np.float16)}


# -- the build ------------------------------------------------------------------------------
def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"out_dir '{out_dir}': exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "manifest.json").exists() \
            and not (out_dir / "cache").is_dir():
        raise OutputError(f"out_dir '{out_dir}': not empty and not a corpus folder; refusing to write into it")


def _file_key(path: Path, fingerprint: str, max_pieces: int | None) -> str:
    h = hashlib.sha256(f"{BUILD_VERSION}:{fingerprint}:{max_pieces}:".encode())
    h.update(path.read_bytes())
    return h.hexdigest()[:16]


def build_corpus(out_dir: str | os.PathLike, *, collections: tuple[str, ...] = DEFAULT_COLLECTIONS,
                 limit: int | None = None, progress: bool = True, workers: int = 2) -> Manifest:
    """Build (or reuse) the tokenised training corpus in ``out_dir``.

    Parameters
    ----------
    out_dir : folder owned by the corpus (created if missing)
    collections : music21 corpus folders to read, e.g. ``("bach", "essenFolksong")``
    limit : at most this many pieces per collection, the first in file order (None = all)
    progress : show a tqdm bar over the source files
    workers : processes converting files in parallel (1 = in this process)

    Returns
    -------
    Manifest
        ``data`` holds ``pieces`` (id, collection, split, tokens, bpm, seconds), ``splits``
        (pieces, tokens), ``collections`` (files, files_failed, pieces, skipped by reason,
        tokens), ``tokenizer`` (fingerprint), ``content_hash`` and ``build_seconds``.
    """
    from tqdm.auto import tqdm

    from cuecraft.training.music21_pieces import corpus_root, source_files

    started = time.perf_counter()
    out_dir = Path(out_dir)
    if isinstance(limit, bool) or (limit is not None and (not isinstance(limit, int) or limit < 1)):
        raise ParameterError(f"limit = {limit!r}: must be a positive integer or None")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ParameterError(f"workers = {workers!r}: must be an integer >= 1")
    if isinstance(collections, str) or not collections:
        raise ParameterError(f"collections = {collections!r}: must be a non-empty tuple of corpus folder names")
    try:
        files = {name: source_files(name) for name in collections}
    except FileNotFoundError as exc:
        raise ParameterError(str(exc)) from None
    _check_out_dir(out_dir)
    fingerprint = default_tokenizer().fingerprint
    root = corpus_root()
    tasks = {name: [(name, str(p), p.relative_to(root).as_posix(), limit,
                     str(out_dir / "cache" / name / f"{p.name}.{_file_key(p, fingerprint, limit)}.npz"))
                    for p in paths] for name, paths in files.items()}

    bar = tqdm(total=sum(len(t) for t in tasks.values()), unit="file", desc="corpus", disable=not progress)
    pool = None
    try:
        def run(batch):
            nonlocal pool
            todo = [t for t in batch if not Path(t[4]).is_file()]
            bar.update(len(batch) - len(todo))
            if workers > 1 and len(todo) > 1 and pool is None:
                import multiprocessing

                pool = multiprocessing.get_context("spawn").Pool(workers)
            # Largest files first, so no worker is left with a big one at the end.
            todo.sort(key=lambda t: -os.path.getsize(t[1]))
            for _ in (pool.imap_unordered(_convert_file, todo) if pool is not None and len(todo) > 1
                      else map(_convert_file, todo)):
                bar.update(1)

        if limit is None:
            run([t for name in collections for t in tasks[name]])
            used = {name: tasks[name] for name in collections}
        else:
            used = {}
            for name in collections:
                count, used[name] = 0, []
                for i in range(0, len(tasks[name]), workers):
                    batch = tasks[name][i:i + workers]
                    run(batch)
                    used[name] += batch
                    count += sum(1 for t in batch for s in _read_meta(t[4])["statuses"] if s == "ok")
                    if count >= limit:
                        break
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()
    return _write(out_dir, used, collections=collections, limit=limit, fingerprint=fingerprint, started=started)


def _read_meta(cache: str) -> dict:
    with np.load(cache, allow_pickle=False) as z:
        return json.loads(str(z["meta"]))


def _write(out_dir: Path, used: dict, *, collections, limit, fingerprint: str, started: float) -> Manifest:
    """Gather the per-file caches into split shards and the manifest (unless unchanged)."""
    from cuecraft.io.files import atomic_path

    inputs_key = hashlib.sha256(json.dumps([fingerprint, limit, [[t[4] for t in used[n]] for n in collections]])
                                .encode()).hexdigest()
    try:
        old = load_manifest(out_dir)
        if old.data.get("inputs_key") == inputs_key:
            return old
    except Exception:  # noqa: BLE001 - no or stale manifest: rebuild it
        pass
    chunks = {s: [] for s in SPLITS}
    ids = {s: [] for s in SPLITS}
    pieces, stats = [], {}
    for name in collections:
        st = stats[name] = {"files": 0, "files_failed": 0, "pieces": 0, "skipped": {}, "tokens": 0}
        for task in used[name]:
            if limit is not None and st["pieces"] >= limit:
                break
            with np.load(task[4], allow_pickle=False) as z:
                arrays = {k: z[k] for k in ARRAYS}
                meta = json.loads(str(z["meta"]))
            st["files"] += 1
            ok = iter(range(len(meta["pieces"])))
            for status in meta["statuses"]:
                if limit is not None and st["pieces"] >= limit:
                    break
                if status != "ok":
                    st["files_failed"] += status.startswith("parse")
                    st["skipped"][status] = st["skipped"].get(status, 0) + 1
                    continue
                k = next(ok)
                info = meta["pieces"][k]
                a, b = arrays["offsets"][k], arrays["offsets"][k + 1]
                split = piece_split(info["id"])
                chunks[split].append(tuple(arrays[n][a:b] for n in ("tokens", "pitch_class", "intensity", "emotion")))
                ids[split].append(info["id"])
                pieces.append({**info, "collection": name, "split": split, "tokens": int(b - a)})
                st["pieces"] += 1
                st["tokens"] += int(b - a)
    by_split = {s: _concat(chunks[s]) for s in SPLITS}
    out_dir.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        with atomic_path(out_dir / f"{split}.npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, **by_split[split], ids=np.array(ids[split], dtype=str))
    data = {"format": FORMAT, "version": BUILD_VERSION, "tokenizer": fingerprint,
            "content_hash": content_hash(by_split, ids), "inputs_key": inputs_key,
            "options": {"collections": list(collections), "limit": limit},
            "splits": {s: {"pieces": len(ids[s]), "tokens": int(len(by_split[s]["tokens"]))} for s in SPLITS},
            "collections": stats, "build_seconds": round(time.perf_counter() - started, 1), "pieces": pieces}
    with atomic_path(out_dir / "manifest.json") as tmp:
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return Manifest(root=out_dir, data=data)


# Re-exported: the dataset reads what build_corpus writes.
from cuecraft.training.token_dataset import TokenDataset  # noqa: E402, F401
