import pytest
import torch

from spikeforge.model import MultiStepLIFNode


def run(x, **kw):
    return MultiStepLIFNode(**kw)(torch.tensor(x, dtype=torch.float32).unsqueeze(1)).flatten().tolist()


def test_hand_computed_trace_tau2():
    # H: 0.5, 0.75, 0.875, 1.4375 (fire, V -> 0), 0.0
    assert run([1.0, 1.0, 1.0, 2.0, 0.0], tau=2.0) == [0, 0, 0, 1, 0]


def test_spike_at_exact_threshold_and_hard_reset():
    # H1 = 2/2 = 1.0 >= 1 fires; V = 0 so H2 = 0.8/2 = 0.4 (no memory of the 1.0)
    assert run([2.0, 0.8, 1.2], tau=2.0) == [1, 0, 0]    # H3 = 0.4 + (1.2-0.4)/2 = 0.8
    assert run([2.0, 0.8, 1.7], tau=2.0) == [1, 0, 1]    # H3 = 0.4 + 0.65 = 1.05


def test_tau_1_5_and_attention_threshold():
    # tau 1.5: H1 = 1.5/1.5 = 1.0 fires; H2 = 0.75/1.5 = 0.5, H3 = 0.5 + (0.5-0.5)/1.5 = 0.5
    assert run([1.5, 0.75, 0.5], tau=1.5) == [1, 0, 0]
    # v_threshold 0.5: H1 = 0.5 fires
    assert run([1.0, 0.9], tau=2.0, v_threshold=0.5) == [1, 0]


def test_membrane_trace_values():
    """The membrane before reset is 0.3, 0.45, 0.525, 1.7625: probed through the threshold, since the
    first spike falls at step k exactly when v_th lies in (H[k-1], H[k]] (the trace rises)."""
    x = [0.6, 0.6, 0.6, 3.0]
    assert run(x, tau=2.0) == [0, 0, 0, 1]
    membranes = [0.3, 0.45, 0.525, 1.7625]
    for k, h in enumerate(membranes):
        assert run(x, tau=2.0, v_threshold=h).index(1) == k, (k, h)
        assert 1 not in run(x, tau=2.0, v_threshold=h + 1e-4)[:k + 1], (k, h)


def test_surrogate_gradient_is_sigmoid_derivative_alpha_4():
    x = torch.tensor([[1.6]], requires_grad=True)   # H = 0.8, H - v_th = -0.2
    MultiStepLIFNode(tau=2.0)(x).sum().backward()
    sg = torch.sigmoid(torch.tensor(4 * -0.2))
    expected = 4 * sg * (1 - sg) * 0.5                # dH/dx = 1/tau
    assert torch.allclose(x.grad, expected.reshape(1, 1))


def test_detach_reset_changes_gradient_through_time():
    x = torch.tensor([[2.4], [1.0]])
    grads = []
    for detach in (True, False):
        xi = x.clone().requires_grad_(True)
        MultiStepLIFNode(tau=2.0, detach_reset=detach)(xi).sum().backward()
        grads.append(xi.grad.clone())
    assert not torch.equal(grads[0], grads[1])


def test_no_state_dict_entries():
    assert MultiStepLIFNode().state_dict() == {}


def test_invalid_tau():
    with pytest.raises(ValueError, match="tau must be at least 1.0"):
        MultiStepLIFNode(tau=0.5)


@pytest.mark.parametrize("tau,v_th", [(2.0, 1.0), (1.5, 1.0), (2.0, 0.5)])
def test_matches_spikingjelly_0_0_0_0_12(tau, v_th):
    # spikingjelly 0.0.0.0.12 is installed --no-deps by the test command (newer ones pull CUDA torch)
    from spikingjelly.clock_driven.neuron import MultiStepLIFNode as Reference

    x = torch.randn(8, 4, 32, generator=torch.Generator().manual_seed(1)) * 1.5
    ours = MultiStepLIFNode(tau=tau, v_threshold=v_th)
    theirs = Reference(tau=tau, v_threshold=v_th, detach_reset=True, backend="torch")
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out_a, out_b = ours(xa), theirs(xb)
    assert torch.equal(out_a, out_b)
    assert 0.05 < out_a.mean() < 0.6
    (out_a * torch.arange(32)).sum().backward()
    (out_b * torch.arange(32)).sum().backward()
    assert torch.allclose(xa.grad, xb.grad, atol=1e-6)
