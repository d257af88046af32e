"""Multi-step leaky integrate-and-fire neuron with SpikingJelly ``MultiStepLIFNode`` semantics.

Per timestep ``t`` (``V`` starts at ``v_reset = 0``)::

    H[t] = V[t-1] + (X[t] - V[t-1]) / tau      # charge, decay_input=True
    S[t] = H[t] >= v_threshold                  # fire (Heaviside, 1 at equality)
    V[t] = H[t] * (1 - S[t])                    # hard reset to 0, reset detached

The backward pass uses the sigmoid surrogate ``d S / d H = alpha * sg * (1 - sg)``,
``sg = sigmoid(alpha * (H - v_threshold))`` with ``alpha = 4``. The neuron holds no
parameters or buffers, so it adds no keys to a state dict (as in the official code).
"""

import torch
from torch import nn

__all__ = ["SigmoidSpike", "MultiStepLIFNode"]


class SigmoidSpike(torch.autograd.Function):
    """Heaviside forward, sigmoid-derivative backward (SpikingJelly ``surrogate.Sigmoid``)."""

    @staticmethod
    def forward(ctx, x, alpha):
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        sg = torch.sigmoid(ctx.alpha * x)
        return grad_output * ctx.alpha * sg * (1.0 - sg), None


class MultiStepLIFNode(nn.Module):
    """LIF neuron run over the leading time dimension of its input ``[T, ...]``.

    Parameters
    ----------
    tau : float
        Membrane time constant (> 1 for a leak; 2.0 for static images, 1.5 for DVS).
    v_threshold : float
        Firing threshold (1.0; the official attention LIF uses 0.5).
    detach_reset : bool
        Cut the gradient through the reset (the official models use ``True``).
    alpha : float
        Steepness of the sigmoid surrogate gradient.
    """

    def __init__(self, tau=2.0, v_threshold=1.0, detach_reset=True, alpha=4.0):
        super().__init__()
        if not tau >= 1.0:
            raise ValueError(f"tau must be at least 1.0, not {tau!r}")
        self.tau = float(tau)
        self.v_threshold = float(v_threshold)
        self.detach_reset = bool(detach_reset)
        self.alpha = float(alpha)

    def extra_repr(self):
        return f"tau={self.tau}, v_threshold={self.v_threshold}, detach_reset={self.detach_reset}"

    def forward(self, x):
        v = torch.zeros_like(x[0])
        spikes = []
        for x_t in x:
            h = v + (x_t - v) / self.tau
            s = SigmoidSpike.apply(h - self.v_threshold, self.alpha)
            s_reset = s.detach() if self.detach_reset else s
            v = h * (1.0 - s_reset)
            spikes.append(s)
        return torch.stack(spikes)
