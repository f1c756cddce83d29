import pytest
import torch
from torch import nn

from cuecraft.models.decoding import default_precision, quantize_rows, use_decoding_weights

needs_int8 = pytest.mark.skipif(default_precision() != "int8", reason="no fast int8 kernel on this CPU")


def _pair(precision: str, width: int = 32):
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(width, 48), nn.GELU(), nn.Linear(48, 5, bias=False), nn.Linear(5, 3))
    fast = nn.Sequential(nn.Linear(width, 48), nn.GELU(), nn.Linear(48, 5, bias=False), nn.Linear(5, 3))
    fast.load_state_dict(plain.state_dict())
    return plain, use_decoding_weights(fast, precision)


@pytest.mark.parametrize("precision", ["fp32", pytest.param("int8", marks=needs_int8)])
def test_close_to_nn_linear_without_gradients(precision):
    plain, fast = _pair(precision)
    x = torch.randn(2, 3, 32)
    fast.eval()
    with torch.inference_mode():
        expected = plain(x)
        got = fast(x)
    tolerance = {"fp32": 1e-5, "int8": 2e-2}[precision]
    assert float((got - expected).abs().max()) <= tolerance * float(expected.abs().max())
    assert not torch.equal(got, expected) or precision == "fp32"  # int8 really multiplied in int8
    assert fast[0]._decoding is not None  # the copy was used


def test_fp32_copy_is_contiguous_transpose():
    _, fast = _pair("fp32")
    with torch.no_grad():
        fast.eval()(torch.randn(1, 32))
    copy = fast[0]._decoding[1]
    assert copy.shape == (32, 48) and copy.is_contiguous() and torch.equal(copy, fast[0].weight.t())


@needs_int8
def test_int8_only_where_the_input_width_suits_the_kernel():
    _, fast = _pair("int8")
    with torch.no_grad():
        fast.eval()(torch.randn(1, 32))
    assert fast[0]._int8 and fast[0]._decoding[1].dtype == torch.int8
    assert fast[2]._int8  # 48 = 3 x 16
    assert not fast[3]._int8 and fast[3]._decoding[1].dtype == torch.float32  # 5 inputs: fp32


@needs_int8
def test_int8_rows_do_not_depend_on_the_batch():
    # A prompt fed at once and the same steps fed one by one must give the same numbers.
    _, fast = _pair("int8")
    x = torch.randn(6, 32)
    with torch.inference_mode():
        together = fast.eval()(x)
        alone = torch.cat([fast(x[i:i + 1]) for i in range(6)])
    assert torch.equal(together, alone)


def test_quantize_rows_reconstructs_each_row():
    torch.manual_seed(1)
    weight = torch.randn(7, 64) * torch.logspace(-3, 1, 7)[:, None]  # rows of very different size
    weight[3] = 0.0
    q, scales = quantize_rows(weight)
    assert q.dtype == torch.int8 and scales.dtype == torch.bfloat16 and q.shape == weight.shape
    restored = q.float() * scales.float()[:, None]
    row_error = (restored - weight).abs().amax(1)
    assert torch.all(row_error <= weight.abs().amax(1) / 127 * 0.51 + 1e-12)  # half a step of each row
    assert torch.equal(restored[3], torch.zeros(64)) and int(q.abs().max()) == 127


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_training_still_gets_gradients_through_the_parameters(precision):
    _, fast = _pair(precision)
    fast.train()
    fast(torch.randn(4, 32)).sum().backward()
    assert fast[0].weight.grad is not None and fast[2].weight.grad.abs().sum() > 0
    assert fast[0]._decoding is None  # the training path never built a copy


@pytest.mark.parametrize("precision", ["fp32", pytest.param("int8", marks=needs_int8)])
def test_a_weight_changed_in_place_is_copied_again(precision):
    plain, fast = _pair(precision)
    x = torch.randn(1, 32)
    fast.eval()
    with torch.no_grad():
        before = fast(x)
        for model in (plain, fast):
            model[2].weight.mul_(-2.0)
        after, expected = fast(x), plain(x)
    assert not torch.allclose(after, before)
    torch.testing.assert_close(after, expected, atol=2e-2 * float(expected.abs().max()), rtol=0)


def test_state_dict_keys_and_values_unchanged():
    plain, fast = _pair("int8" if default_precision() == "int8" else "fp32")
    with torch.no_grad():
        fast.eval()(torch.randn(1, 32))
    assert fast.state_dict().keys() == plain.state_dict().keys()
    for key, value in plain.state_dict().items():
        assert torch.equal(fast.state_dict()[key], value)


def test_applying_again_switches_precision():
    plain, fast = _pair("fp32")
    x = torch.randn(3, 32)
    with torch.no_grad():
        fast.eval()(x)
        use_decoding_weights(fast, "fp32")
        assert fast[0]._decoding is None  # the old copy is dropped
        torch.testing.assert_close(fast(x), plain(x))
    assert fast.decoding_precision == "fp32"


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision = 'fp16'"):
        use_decoding_weights(nn.Linear(4, 4), "fp16")
