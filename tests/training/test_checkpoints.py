import pytest
import torch

from cuecraft.errors import MediaError
from cuecraft.training.checkpoints import (load_train_state, load_weights, read_metadata, save_train_state,
                                           save_weights)


def tiny(width=8):
    return torch.nn.Sequential(torch.nn.Linear(4, width), torch.nn.ReLU(), torch.nn.Linear(width, 2))


def test_weights_round_trip_with_metadata(tmp_path):
    a, b = tiny(), tiny()
    path = save_weights(tmp_path / "m.safetensors", a, metadata={"config": "{}", "corpus": "abc"})
    meta = load_weights(path, b, expect={"config": "{}"})
    assert meta["corpus"] == "abc"
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    assert not list(tmp_path.glob(".*part*"))


def test_mismatched_config_is_refused(tmp_path):
    path = save_weights(tmp_path / "m.safetensors", tiny(), metadata={"config": '{"d": 1}'})
    with pytest.raises(MediaError, match=r"config does not match \(d: file: 1, expected: 2\)"):
        load_weights(path, tiny(), expect={"config": '{"d": 2}'})


def test_shape_and_key_mismatches_are_listed_not_partially_loaded(tmp_path):
    path = save_weights(tmp_path / "m.safetensors", tiny(8), metadata={})
    other = tiny(16)
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(MediaError, match=r"shape mismatch 0\.bias \(8,\) vs \(16,\), 0\.weight \(8, 4\) vs \(16, 4\)"):
        load_weights(path, other)
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())  # untouched
    bigger = torch.nn.Sequential(*tiny(8), torch.nn.Linear(2, 2))
    with pytest.raises(MediaError, match=r"missing 3\.bias, 3\.weight"):
        load_weights(path, bigger)


@pytest.mark.parametrize("content", [b"", b"not safetensors at all", b"\x10\x00\x00\x00\x00\x00\x00\x00{}"])
def test_corrupt_or_missing_file(tmp_path, content):
    path = tmp_path / "bad.safetensors"
    with pytest.raises(MediaError, match="no such file"):
        read_metadata(path)
    path.write_bytes(content)
    with pytest.raises(MediaError, match="bad.safetensors"):
        load_weights(path, tiny())


def test_optimizer_state_round_trip(tmp_path):
    model = tiny()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(5, 4)).sum().backward()
        opt.step()
    save_train_state(tmp_path, opt, state={"step": 3})
    fresh = torch.optim.AdamW(model.parameters(), lr=1e-2)
    assert load_train_state(tmp_path, fresh)["step"] == 3
    for p in model.parameters():
        assert torch.equal(opt.state[p]["exp_avg"], fresh.state[p]["exp_avg"])
        assert float(opt.state[p]["step"]) == float(fresh.state[p]["step"])


def test_config_mismatch_names_the_differing_key(tmp_path):
    path = save_weights(tmp_path / "m.safetensors", tiny(), metadata={"model_config": '{"d_model": 256, "n": 6}'})
    with pytest.raises(MediaError, match=r"model_config does not match \(d_model: file: 256, expected: 128\)"):
        load_weights(path, tiny(), expect={"model_config": '{"d_model": 128, "n": 6}'})


def test_export_to_float16_keeps_metadata_and_loads(tmp_path):
    from cuecraft.training.checkpoints import export_weights

    a = tiny()
    src = save_weights(tmp_path / "m.safetensors", a, metadata={"config": "x"})
    dst = export_weights(src, tmp_path / "half.safetensors")
    assert dst.stat().st_size < src.stat().st_size
    b = tiny()
    meta = load_weights(dst, b, expect={"config": "x"})
    assert meta["stored_dtype"] == "float16"
    for (_, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert vb.dtype == torch.float32 and torch.allclose(va, vb, atol=1e-3)
