import json
import os

import numpy as np
import pytest

from cuecraft.controls.features import CONTROL_SLICES, N_FEATURES, melody_features
from cuecraft.errors import MediaError, OutputError, ParameterError
from cuecraft.models.tokenizer import MELODY_PROGRAM, TYPE_INDEX
from cuecraft.training.corpus import (ARRAYS, SPLITS, TokenDataset, _convert_file, build_corpus, content_hash,
                                      default_tokenizer, load_manifest, piece_split)
from cuecraft.training.music21_pieces import SkipPiece, corpus_root, parse_file, to_piece
from cuecraft.training.piece_controls import token_melody_changes

COLLECTIONS = ("bach", "nottingham-dataset", "ryansMammoth")
PITCH_CLASS = slice(3, 16)   # the melody block starts with the pitch class now (13)...
UNTIL = slice(16, 33)        # ...then 16ths to its next change (17)...
NEXT_PC = slice(33, 46)      # ...and the pitch class it changes to (13)
LOOK_AHEAD = slice(16, 46)
INTENSITY = CONTROL_SLICES["intensity"].start
EMOTION = CONTROL_SLICES["emotion"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A few real chorales and tunes, built once in this process."""
    out = tmp_path_factory.mktemp("corpus")
    return build_corpus(out, collections=COLLECTIONS, limit=4, progress=False, workers=1)


def shard_arrays(manifest):
    arrays, ids = {}, {}
    for split in SPLITS:
        with np.load(manifest.shard(split)) as z:
            arrays[split] = {k: z[k] for k in ARRAYS}
            ids[split] = [str(x) for x in z["ids"]]
    return arrays, ids


def test_manifest_counts_splits_and_hash(corpus):
    data = corpus.data
    stats = data["collections"]
    assert [stats[c]["pieces"] for c in COLLECTIONS] == [4, 2, 4]  # the Nottingham file holds 2 tunes
    assert sum(s["pieces"] for s in data["splits"].values()) == len(corpus.pieces) == 10
    assert all(p["split"] == piece_split(p["id"]) for p in corpus.pieces)
    assert data["tokenizer"] == default_tokenizer().fingerprint
    arrays, ids = shard_arrays(corpus)
    assert content_hash(arrays, ids) == corpus.content_hash and len(corpus.content_hash) == 64
    for split in SPLITS:
        a = arrays[split]
        assert a["offsets"][-1] == len(a["tokens"]) == len(a["pitch_class"]) == len(a["emotion"])
        assert data["splits"][split]["tokens"] == len(a["tokens"])
        tokens = a["tokens"].astype(np.int64)
        for start in a["offsets"][:-1]:
            assert tokens[start] == default_tokenizer().bos_id
    assert load_manifest(corpus.root).content_hash == corpus.content_hash


def test_rebuild_reuses_the_cache(corpus):
    caches = sorted(corpus.root.glob("cache/*/*.npz"))
    stamps = [os.stat(p).st_mtime_ns for p in caches]
    shard_stamp = os.stat(corpus.shard("train")).st_mtime_ns
    again = build_corpus(corpus.root, collections=COLLECTIONS, limit=4, progress=False, workers=1)
    assert again.content_hash == corpus.content_hash
    assert [os.stat(p).st_mtime_ns for p in caches] == stamps
    assert os.stat(corpus.shard("train")).st_mtime_ns == shard_stamp
    # Fewer pieces reuse the same conversions but give other shards.
    smaller = build_corpus(corpus.root, collections=("nottingham-dataset",), limit=4, progress=False, workers=1)
    assert len(smaller.pieces) == 2 and smaller.content_hash != corpus.content_hash
    assert sorted(corpus.root.glob("cache/*/*.npz")) == caches
    # Put the shared fixture back for the tests after this one (from the cache, so cheap).
    restored = build_corpus(corpus.root, collections=COLLECTIONS, limit=4, progress=False, workers=1)
    assert restored.content_hash == corpus.content_hash


def test_split_is_deterministic_and_about_90_5_5():
    ids = [f"essenFolksong/x{i}.abc#{i % 7}" for i in range(4000)]
    splits = [piece_split(i) for i in ids]
    assert splits == [piece_split(i) for i in ids]
    share = {s: splits.count(s) / len(ids) for s in SPLITS}
    assert share["train"] == pytest.approx(0.90, abs=0.02) and share["test"] == pytest.approx(0.05, abs=0.015)


def test_unparsable_files_and_odd_meters_are_skipped_and_counted(tmp_path):
    bad = tmp_path / "bad.krn"
    bad.write_text("**kern\n*M5/4\n4c\n*-\nthis is not humdrum\n")
    cache = tmp_path / "c.npz"
    _convert_file(("x", str(bad), "x/bad.krn", None, str(cache)))
    with np.load(cache) as z:
        statuses = json.loads(str(z["meta"]))["statuses"]
    assert len(statuses) == 1 and statuses[0] != "ok"

    from music21 import meter, note, stream

    part = stream.Part([meter.TimeSignature("5/4"), note.Note("C5", quarterLength=5)])
    with pytest.raises(SkipPiece, match="meter"):
        to_piece(stream.Score([part]))
    with pytest.raises(SkipPiece, match="empty"):
        to_piece(stream.Score([stream.Part([meter.TimeSignature("4/4")])]))


def test_pieces_keep_pickups_on_the_beat_and_realise_chord_symbols():
    chorale = to_piece(parse_file(corpus_root() / "bach/bwv66.6.mxl")[0]).score
    melody = chorale.tracks[0]
    assert melody.program == MELODY_PROGRAM and melody.notes[0].time == 3 * 480  # the pickup is beat 4
    assert len(chorale.tracks[1].notes) > 2 * len(melody.notes)  # alto, tenor, bass
    tune = to_piece(parse_file(corpus_root() / "nottingham-dataset/reelsa-c.abc")[0]).score
    harmony = tune.tracks[1]
    onsets = sorted({n.time for n in harmony.notes})
    assert onsets[0] == 4 * 480 and all(t % (2 * 480) == 0 for t in onsets)  # chords change on half bars here
    assert all(36 <= n.pitch <= 66 for n in harmony.notes)


def test_dataset_items(corpus):
    tk = default_tokenizer()
    ds = TokenDataset(corpus.root, split="train", seq_len=128, augment=False)
    assert len(ds) >= sum(1 for p in corpus.pieces if p["split"] == "train")
    item = ds[0]
    assert item["tokens"].shape == (128,) and str(item["tokens"].dtype) == "torch.int64"
    assert item["controls"].shape == (128, N_FEATURES) and str(item["controls"].dtype) == "torch.float32"
    assert item["presence"].tolist() == [1, 1, 1, 1]
    batch = ds.sample(np.random.default_rng(5), batch_size=3)
    assert batch["tokens"].shape == (3, 128) and batch["controls"].shape == (3, 128, N_FEATURES)
    assert batch["presence"].shape == (3, 4)
    assert (ds.sample(np.random.default_rng(5), batch_size=3)["tokens"] == batch["tokens"]).all()
    for i in range(len(ds)):
        tokens = ds[i]["tokens"].numpy()
        assert tokens[0] in (tk.bos_id, tk.token_id("Bar_None"))  # crops start where bars are known
        assert np.array_equal(ds[i]["tokens"].numpy(), tokens)  # same epoch, same crop
    # Without augmentation the features are those of the stored controls (a window longer
    # than the piece: the whole piece from its BOS, then PAD).
    arrays, _ = shard_arrays(corpus)
    train = arrays["train"]
    n = int(train["offsets"][1])
    whole = TokenDataset(corpus.root, split="train", seq_len=n + 5, augment=False)[0]
    assert np.array_equal(whole["tokens"][:n].numpy(), train["tokens"][:n])
    assert (whole["tokens"][n:] == tk.pad_id).all() and (whole["controls"][n:] == 0).all()
    controls = whole["controls"][:n].numpy()
    assert np.array_equal(controls[:, PITCH_CLASS].argmax(axis=1), train["pitch_class"][:n])
    assert controls[:, INTENSITY] == pytest.approx(train["intensity"][:n].astype(float) / 40 + 1, abs=1e-3)
    assert controls[:, EMOTION] == pytest.approx(train["emotion"][:n].astype(float), abs=1e-3)
    # The look-ahead sees the whole piece's top voice, read off its tokens.
    change_times, change_pc = token_melody_changes(train["tokens"][:n].astype(np.int64), tokenizer=tk)
    expected = melody_features(np.zeros(n), now=tk.timeline(train["tokens"][:n].astype(np.int64))[0],
                               change_times=change_times, change_pitch_class=change_pc)
    assert np.array_equal(controls[:, LOOK_AHEAD], expected[:, 13:])
    assert controls[:, LOOK_AHEAD][:, :16].any()  # some changes within 4 beats


def test_compound_items_are_the_event_items_in_steps(corpus):
    from cuecraft.models.compound import SLOTS, flatten, group, step_starts

    tk = default_tokenizer()
    arrays, _ = shard_arrays(corpus)
    n = int(arrays["train"]["offsets"][1])
    events = TokenDataset(corpus.root, split="train", seq_len=n, augment=False)[0]
    steps = len(step_starts(events["tokens"].numpy(), tk))
    whole = TokenDataset(corpus.root, split="train", seq_len=steps + 3, augment=False, compound=True)[0]
    assert whole["tokens"].shape == (SLOTS, steps + 3) and whole["controls"].shape == (steps + 3, N_FEATURES)
    assert np.array_equal(whole["tokens"][:, :steps].numpy(), group(events["tokens"].numpy(), tk))
    assert (whole["tokens"][:, steps:] == tk.pad_id).all() and (whole["controls"][steps:] == 0).all()
    starts = step_starts(events["tokens"].numpy(), tk)
    assert np.array_equal(whole["controls"][:steps].numpy(), events["controls"][starts].numpy())
    # A crop of 16 steps is cut from 64 event tokens (a step holds at most 4), then trimmed.
    ds = TokenDataset(corpus.root, split="train", seq_len=16, compound=True)
    batch = ds.sample(np.random.default_rng(2), batch_size=4)
    assert batch["tokens"].shape == (4, SLOTS, 16) and batch["controls"].shape == (4, 16, N_FEATURES)
    for row in batch["tokens"].numpy():
        flat = flatten(row, tk)
        assert tk.types[flat[0]] in (TYPE_INDEX["BOS"], TYPE_INDEX["Bar"]) and len(flat) > 16


def test_augmentation_moves_pitches_and_controls_together(corpus):
    tk = default_tokenizer()
    plain = TokenDataset(corpus.root, split="train", seq_len=256, augment=False, seed=3)
    aug = TokenDataset(corpus.root, split="train", seq_len=256, augment=True, seed=3)
    shifts, agree = set(), []
    for epoch in range(3):
        plain.set_epoch(epoch)
        aug.set_epoch(epoch)
        for i in range(len(aug)):
            a, p = aug[i], plain[i]
            ta, tp = a["tokens"].numpy(), p["tokens"].numpy()
            is_pitch = tk.types[tp] == TYPE_INDEX["Pitch"]
            # Same crop (the crop is drawn before the augmentation), pitches moved together.
            assert np.array_equal(tk.types[ta], tk.types[tp])
            moved = set((tk.values[ta[is_pitch]] - tk.values[tp[is_pitch]]).tolist())
            assert len(moved) <= 1
            shifts |= moved
            shift = moved.pop() if moved else 0
            pc_plain = p["controls"][:, 3:15].numpy().argmax(axis=1)
            pc_aug = a["controls"][:, 3:15].numpy().argmax(axis=1)
            sounding = (p["controls"][:, 15].numpy() == 0) & (tp != tk.pad_id)
            agree.append(np.all(pc_aug[sounding] == (pc_plain[sounding] + shift) % 12))
            # The upcoming pitch class moves too, and the time to it does not.
            next_plain = p["controls"][:, NEXT_PC].numpy()
            next_aug = a["controls"][:, NEXT_PC].numpy()
            pitched = next_plain[:, :12].any(axis=1)
            agree.append(np.all(next_aug[pitched, :12].argmax(1) == (next_plain[pitched, :12].argmax(1) + shift) % 12))
            agree.append(np.array_equal(a["controls"][:, UNTIL].numpy(), p["controls"][:, UNTIL].numpy()))
            louder = tk.values[ta[tk.types[ta] == TYPE_INDEX["Velocity"]]] - tk.values[tp[tk.types[tp] == TYPE_INDEX["Velocity"]]]
            if len(louder) and np.all(louder > 0):
                assert (a["controls"][:, INTENSITY] >= p["controls"][:, INTENSITY] - 1e-3).all()
    assert all(agree) and len(shifts - {0}) >= 2


@pytest.mark.parametrize("max_step", [1, 2])
def test_velocity_walk_changes_dynamics_bar_by_bar_and_intensity_with_them(corpus, max_step):
    tk = default_tokenizer()
    plain = TokenDataset(corpus.root, split="train", seq_len=256, augment=False, seed=5)
    walk = TokenDataset(corpus.root, split="train", seq_len=256, augment=True, seed=5, velocity_walk=1.0,
                        velocity_walk_step=max_step)
    levels_seen, within_crop_changes, steps_seen = set(), 0, set()
    for i in range(len(walk)):
        a, p = walk[i], plain[i]
        ta, tp = a["tokens"].numpy(), p["tokens"].numpy()
        assert np.array_equal(tk.types[ta], tk.types[tp])  # same crop, only values move
        bar = np.cumsum(tk.types[tp] == TYPE_INDEX["Bar"])
        # Velocity 79 is bin 4 of 8: no shift in (-3, 2) clips it, so its shift is the bar's level.
        is_velocity = (tk.types[tp] == TYPE_INDEX["Velocity"]) & (tk.values[tp] == 79)
        shift = ta[is_velocity] - tp[is_velocity]  # in bins (Velocity ids are consecutive)
        per_bar = {}
        for b, k in zip(bar[is_velocity], shift):
            per_bar.setdefault(int(b), set()).add(int(k))
        assert all(len(ks) == 1 for ks in per_bar.values())  # one level per bar
        loud = {b: ks.pop() for b, ks in per_bar.items()}
        bars = sorted(loud)
        steps = {abs(loud[y] - loud[x]) for x, y in zip(bars, bars[1:]) if y == x + 1}
        assert max(steps, default=0) <= max_step
        steps_seen |= steps
        levels_seen |= set(loud.values())
        within_crop_changes += len(set(loud.values())) > 1
        # The intensity moves with each bar's level: louder bars got more dB than softer ones.
        delta = (a["controls"][:, INTENSITY] - p["controls"][:, INTENSITY]).numpy()
        sounding = (p["controls"][:, INTENSITY].numpy() > 0.05) & (tp != tk.pad_id)
        by_level = {}
        for b in bars:
            rows = sounding & (bar == b)
            if rows.any():
                by_level.setdefault(loud[b], []).append(float(np.median(delta[rows])))
        means = [np.mean(by_level[k]) for k in sorted(by_level)]
        assert all(y > x + 0.005 for x, y in zip(means, means[1:])), by_level
    assert within_crop_changes >= len(walk) // 2 and len(levels_seen) >= 3
    assert max_step in steps_seen  # the largest step is taken, not only allowed
    with pytest.raises(ParameterError, match="velocity_walk = 1.5"):
        TokenDataset(corpus.root, velocity_walk=1.5)
    with pytest.raises(ParameterError, match="velocity_walk_step = 0"):
        TokenDataset(corpus.root, velocity_walk_step=0)


def test_bad_arguments_and_foreign_folders(tmp_path, corpus):
    with pytest.raises(ParameterError, match="limit = 0"):
        build_corpus(tmp_path / "c", limit=0)
    with pytest.raises(ParameterError, match="'nosuch'"):
        build_corpus(tmp_path / "c", collections=("nosuch",))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError, match="not a corpus folder"):
        build_corpus(tmp_path / "mine", collections=("bach",), limit=1, progress=False, workers=1)
    with pytest.raises(MediaError, match="manifest"):
        load_manifest(tmp_path / "mine")
    with pytest.raises(ParameterError, match="seq_len"):
        TokenDataset(corpus.root, seq_len=1)


def test_harmony_repeat_draws_harmonised_pieces_more_often(corpus):
    tk = default_tokenizer()
    plain = TokenDataset(corpus.root, split="train", seq_len=64)
    repeated = TokenDataset(corpus.root, split="train", seq_len=64, harmony_repeat=3)

    def harmonised_share(dataset):
        rng = np.random.default_rng(0)
        batch = dataset.sample(rng, batch_size=400)["tokens"].numpy()
        return float(np.mean((batch == tk.harmony_id).any(axis=-1)))

    pieces = repeated._piece
    harmonised = np.array([(tk.harmony_id == repeated._arrays["tokens"][a:b]).any()
                           for a, b in zip(repeated._arrays["offsets"][:-1], repeated._arrays["offsets"][1:])])
    assert harmonised.any() and not harmonised.all()  # the fixture has chorales and tunes
    # Each harmonised piece's items are three times as many; the others' are unchanged.
    for p, is_harmonised in enumerate(harmonised):
        assert np.sum(pieces == p) == np.sum(plain._piece == p) * (3 if is_harmonised else 1)
    assert harmonised_share(repeated) > harmonised_share(plain) + 0.1
    with pytest.raises(ParameterError, match="harmony_repeat = 0"):
        TokenDataset(corpus.root, harmony_repeat=0)
