import torch
from torch import nn

from cuecraft.models.decoding import use_transposed_weights


def _pair():
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 4, bias=False))
    fast = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 4, bias=False))
    fast.load_state_dict(plain.state_dict())
    return plain, use_transposed_weights(fast)


def test_same_outputs_without_gradients():
    plain, fast = _pair()
    x = torch.randn(2, 3, 8)
    fast.eval()
    with torch.inference_mode():
        expected = plain(x)
        got = fast(x)
    torch.testing.assert_close(got, expected)
    assert fast[0]._transposed is not None  # the copy was used
    assert fast[0]._transposed[1].shape == (8, 16) and fast[0]._transposed[1].is_contiguous()


def test_training_still_gets_gradients_through_the_parameters():
    _, fast = _pair()
    fast.train()
    fast(torch.randn(4, 8)).sum().backward()
    assert fast[0].weight.grad is not None and fast[2].weight.grad.abs().sum() > 0
    assert fast[0]._transposed is None  # the training path never built a copy


def test_a_weight_changed_in_place_is_copied_again():
    plain, fast = _pair()
    x = torch.randn(1, 8)
    fast.eval()
    with torch.no_grad():
        fast(x)
        for model in (plain, fast):
            model[2].weight.mul_(-2.0)
        torch.testing.assert_close(fast(x), plain(x))


def test_state_dict_keys_and_values_unchanged():
    plain, fast = _pair()
    with torch.no_grad():
        fast.eval()(torch.randn(1, 8))
    assert fast.state_dict().keys() == plain.state_dict().keys()
    for key, value in plain.state_dict().items():
        assert torch.equal(fast.state_dict()[key], value)


def test_applying_twice_is_harmless():
    _, fast = _pair()
    forward = fast[0].forward
    use_transposed_weights(fast)
    assert fast[0].forward == forward
