"""The layer engine's cycle count, computed from a layer's spikes (docs/hardware.md)."""

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
    """Exact cycles of one run: per tile one fetch cycle; per input channel and tap one cycle to
    pick the occupied rows it reaches, then ``max(1, spikes in the masked row)`` per such row; per
    tile ``T·H·W + 2`` for the LIF pass (start and flush); one final cycle."""
    T, cin, cout, H, W = case.shape
    tiles = -(-cout // params.n_pe)
    k = case.weight.shape[-1]
    scan = 1                                         # fetch of the tile's first tap
    for y0, y1, s in _masked(case, k):
        scan += cin                                  # occupancy cycle per (input channel, tap)
        if s is not None:
            rows = case.spikes[:, :, y0:y1 + 1].sum(-1) > 0             # occupied rows
            scan += int((s.sum(-1).clamp(min=1) * rows).sum())
    return tiles * (scan + T * H * W + 2) + 1


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
