"""The fused, chunked training loss equals F.cross_entropy on the projected logits."""
import pytest
import torch
import torch.nn.functional as F

from model.loss import linear_cross_entropy

PAD = 0


def reference(hidden, weight, bias, targets, smoothing):
    logits = F.linear(hidden, weight, bias)  # (B, T, V)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=PAD,
                           label_smoothing=smoothing)


def inputs(with_bias: bool):
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 7, 16, generator=g, dtype=torch.float64, requires_grad=True)  # (B, T, D)
    weight = torch.randn(50, 16, generator=g, dtype=torch.float64, requires_grad=True)  # (V, D)
    bias = torch.randn(50, generator=g, dtype=torch.float64, requires_grad=True) if with_bias else None
    targets = torch.randint(1, 50, (3, 7), generator=g)
    targets[0, 5:] = PAD  # padded rows are dropped, not counted in the mean
    targets[2, 2:] = PAD
    return hidden, weight, bias, targets


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("chunk", [1, 4, 1000])
def test_loss_and_gradients_equal_cross_entropy(with_bias, smoothing, chunk):
    hidden, weight, bias, targets = inputs(with_bias)
    params = [hidden, weight] + ([bias] if with_bias else [])
    want = reference(hidden, weight, bias, targets, smoothing)
    want_grads = torch.autograd.grad(want * 3.0, params)  # a non-unit upstream gradient
    got = linear_cross_entropy(hidden, weight, bias, targets, PAD, smoothing, chunk=chunk)
    got_grads = torch.autograd.grad(got * 3.0, params)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-12)
    assert float(got_grads[0][0, 5:].abs().sum()) == 0.0  # no gradient reaches padded positions


def test_bf16_autocast_matches_reference_closely():
    hidden, weight, _, targets = inputs(False)
    hidden, weight = hidden.detach().float().requires_grad_(), weight.detach().float().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want = reference(hidden, weight, None, targets, 0.1)
        got = linear_cross_entropy(hidden, weight, None, targets, PAD, 0.1, chunk=5)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-2, atol=1e-2)
    got.backward()
    assert hidden.grad.dtype == torch.float32 and weight.grad.dtype == torch.float32


def test_all_padding_is_an_error():
    hidden, weight, _, targets = inputs(False)
    with pytest.raises(ValueError, match="padding"):
        linear_cross_entropy(hidden, weight, None, torch.zeros_like(targets), PAD, 0.1)
