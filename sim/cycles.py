"""The layer engine's cycle count, computed from a layer's spikes (docs/hardware.md)."""

from spikeforge.ops import conv

__all__ = ["layer_cycles", "layer_events", "overhead_bound"]


def _tap_rows(k, H):
    """``(dy, dx, first row, last row)`` of every tap; a row y feeds output row y − dy + 1."""
    taps = [(dy, dx) for dy in range(3) for dx in range(3)] if k == 3 else [(1, 1)]
    return [(dy, dx, 1 if dy == 2 else 0, H - 2 if dy == 0 else H - 1) for dy, dx in taps]


def _masked(case, k):
    """Per tap: the spikes that reach an output position (others are masked before scanning)."""
    T, cin, cout, H, W = case.shape
    for dy, dx, y0, y1 in _tap_rows(k, H):
        x0, x1 = (1 if dx == 2 else 0), (W - 2 if dx == 0 else W - 1)
        yield y0, y1, case.spikes[:, :, y0:y1 + 1, x0:max(x0, x1 + 1)] if y0 <= y1 else None


def layer_events(case, params):
    """Events the array processes: spikes × taps (those reaching the image) × tiles."""
    tiles = -(-case.shape[2] // params.n_pe)
    k = case.weight.shape[-1]
    return tiles * sum(int(s.sum()) for _, _, s in _masked(case, k) if s is not None)


def layer_cycles(case, params):
    """Exact cycles of one run of the layer engine: the CONV descriptor's cycles in the accelerator's
    engine (:func:`spikeforge.ops.conv.cycles`: per tile a fetch, per input channel and tap a cycle to
    pick the occupied rows it reaches, ``max(1, spikes)`` per such row, and the LIF pass) plus the
    layer engine's one final cycle."""
    T, cin, cout, H, W = case.shape
    k = case.weight.shape[-1]
    fields = dict(cin=cin, planes=1, T=T, H=H, W=W, static=0, kernel3=int(k == 3), tiles=-(-cout // params.n_pe))
    return conv.cycles(fields, case.spikes.numpy()) + 1


def overhead_bound(case, params):
    """Cycles beyond one per event, at most: ``tiles × (1 + Cin·taps + R + T·H·W + 2) + 1``, where ``R``
    counts occupied rows whose spikes all fall outside the tap's reachable columns (border rows)."""
    T, cin, cout, H, W = case.shape
    tiles = -(-cout // params.n_pe)
    k = case.weight.shape[-1]
    border = 0
    for y0, y1, s in _masked(case, k):
        if s is not None:
            rows = case.spikes[:, :, y0:y1 + 1].sum(-1) > 0
            border += int((rows & (s.sum(-1) == 0)).sum())
    return tiles * (1 + cin * k * k + border + T * H * W + 2) + 1
