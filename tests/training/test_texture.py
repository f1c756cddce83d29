import numpy as np
import pytest

from cuecraft.controls.features import CONTROL_SLICES
from cuecraft.errors import ParameterError
from cuecraft.models.tokenizer import TYPE_INDEX
from cuecraft.training.corpus import TokenDataset, build_corpus, default_tokenizer
from cuecraft.training.texture import thin_harmony, thinned_controls

INTENSITY = CONTROL_SLICES["intensity"].start


@pytest.fixture(scope="module")
def chorales(tmp_path_factory):
    """Two real Bach chorales (four voices: melody + three harmony voices)."""
    return build_corpus(tmp_path_factory.mktemp("chorales"), collections=("bach",), limit=2, progress=False,
                        workers=1)


def piece(manifest, index=0):
    dataset = TokenDataset(manifest.root, split="train", seq_len=512, augment=False)
    a, b = (int(x) for x in dataset._arrays["offsets"][index:index + 2])
    return dataset, a, b


def follows_grammar(tokenizer, ids) -> bool:
    state = tokenizer.grammar()
    for token in ids.tolist():
        if not state.mask()[token]:
            return False
        state.update(token)
    return True


def bar_of(tokenizer, ids):
    return np.cumsum(tokenizer.types[ids] == TYPE_INDEX["Bar"])


def test_thinning_drops_whole_harmony_bars_and_keeps_the_melody_and_the_grammar(chorales):
    tk = default_tokenizer()
    dataset, a, b = piece(chorales)
    ids = dataset._arrays["tokens"][a:b].astype(np.int64)
    assert follows_grammar(tk, ids)
    kept = thin_harmony(ids, tokenizer=tk, rng=np.random.default_rng(1))
    thin = ids[kept]
    assert np.all(np.diff(kept) > 0) and follows_grammar(tk, thin)
    # The melody and every bar stay; the harmony is gone from some bars and whole in the others.
    assert (thin == tk.melody_id).sum() == (ids == tk.melody_id).sum()
    assert (tk.types[thin] == TYPE_INDEX["Bar"]).sum() == (tk.types[ids] == TYPE_INDEX["Bar"]).sum()
    before = np.bincount(bar_of(tk, ids)[ids == tk.harmony_id], minlength=bar_of(tk, ids)[-1] + 1)
    after = np.bincount(bar_of(tk, thin)[thin == tk.harmony_id], minlength=len(before))
    harmonised = before > 0
    assert np.all((after[harmonised] == 0) | (after[harmonised] == before[harmonised]))
    assert (after[harmonised] == 0).sum() >= 2 and (after[harmonised] > 0).sum() >= 2
    # Different draws thin different bars; a melody-only crop has nothing to thin.
    other = thin_harmony(ids, tokenizer=tk, rng=np.random.default_rng(2))
    assert not np.array_equal(other, kept)
    assert thin_harmony(ids[ids != tk.harmony_id], tokenizer=tk, rng=np.random.default_rng(0)) is None


def test_thinned_bars_are_quieter_and_the_full_bars_keep_their_controls(chorales):
    tk = default_tokenizer()
    dataset, a, b = piece(chorales)
    arrays = dataset._arrays
    ids = arrays["tokens"][a:b].astype(np.int64)
    intensity, emotion = arrays["intensity"][a:b].astype(float), arrays["emotion"][a:b].astype(float)
    beats, changes = dataset._piece_melody(0, a, b)
    kept = thin_harmony(ids, tokenizer=tk, rng=np.random.default_rng(1))
    pc, level, mood, new_changes = thinned_controls(
        ids, kept, tokenizer=tk, pitch_class=arrays["pitch_class"][a:b].astype(float), intensity=intensity,
        emotion=emotion, beats=beats, changes=changes)
    thin = ids[kept]
    assert len(pc) == len(level) == len(mood) == len(thin)
    bars = bar_of(tk, thin)
    lost = np.array([(thin[bars == k] == tk.harmony_id).sum() == 0 and (ids[bar_of(tk, ids) == k]
                                                                        == tk.harmony_id).any()
                     for k in range(bars[-1] + 1)])
    drop = level - intensity[kept]
    sounding = intensity[kept] > -80.0
    thinned_rows = lost[bars] & sounding
    assert np.median(drop[thinned_rows]) < -2.5  # three of four voices gone: about 5 dB
    # A bar whose neighbours are full too is read exactly as stored (the windows stay inside full bars).
    calm = ~lost[bars] & ~lost[np.maximum(bars - 1, 0)] & ~lost[np.minimum(bars + 1, len(lost) - 1)]
    assert calm.any()
    assert np.allclose(level[calm], intensity[kept][calm], atol=1e-6)
    assert np.allclose(mood[calm], emotion[kept][calm], atol=1e-6)
    # The soprano is the top voice throughout a chorale: dropping the lower voices leaves it.
    assert np.array_equal(pc, arrays["pitch_class"][a:b][kept])
    assert np.all(np.diff(new_changes[0]) > 0)


def test_dataset_items_with_texture_thinning(chorales):
    tk = default_tokenizer()
    plain = TokenDataset(chorales.root, split="train", seq_len=128, augment=True, seed=3)
    thinned = TokenDataset(chorales.root, split="train", seq_len=128, augment=True, seed=3, texture_thin=1.0)
    fewer = 0
    for i in range(len(thinned)):
        item, reference = thinned[i], plain[i]
        tokens = item["tokens"].numpy()
        body = tokens[tokens != tk.pad_id]
        assert follows_grammar(tk, body if body[0] == tk.bos_id else np.concatenate([[tk.bos_id], body]))
        assert item["controls"].shape == reference["controls"].shape
        assert np.isfinite(item["controls"].numpy()).all()
        fewer += (tokens == tk.harmony_id).mean() < (reference["tokens"].numpy() == tk.harmony_id).mean()
    assert fewer >= len(thinned) // 2
    with pytest.raises(ParameterError, match="texture_thin = 1.5"):
        TokenDataset(chorales.root, texture_thin=1.5)
