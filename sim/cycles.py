"""The layer engine's cycle count, computed from a layer's spikes (docs/hardware.md)."""

from spikeforge.ops import conv

__all__ = ["layer_cycles", "layer_events", "overhead_bound"]


def _masked(case, k):
    """Per tap: the spikes that reach an output position (others are masked before scanning)."""
    T, cin, cout, H, W = case.shape
    for y0, y1, x0, x1 in conv.tap_windows(k, H, W):
        yield y0, y1, case.spikes[:, :, y0:y1 + 1, x0:max(x0, x1 + 1)] if y0 <= y1 else None


def layer_events(case, params):
    """Events the array processes: spikes × taps (those reaching the image) × tiles."""
    tiles = -(-case.shape[2] // params.n_pe)
    k = case.weight.shape[-1]
    return tiles * sum(int(s.sum()) for _, _, s in _masked(case, k) if s is not None)


def layer_cycles(case, params):
    """Exact cycles of one run of the layer engine: the CONV descriptor's cycles in the accelerator's
    engine (:func:`spikeforge.ops.conv.cycles`: per tile a fetch, per input channel and tap the
    scanner's slot over the occupied rows it reaches, and the LIF pass) plus the layer engine's one
    final cycle."""
    T, cin, cout, H, W = case.shape
    k = case.weight.shape[-1]
    fields = dict(cin=cin, planes=1, T=T, H=H, W=W, static=0, kernel3=int(k == 3), tiles=-(-cout // params.n_pe))
    return conv.cycles(fields, case.spikes.numpy()) + 1


def overhead_bound(case, params):
    """Cycles beyond one per event, at most: ``tiles × (3 + (L + 3)·Cin·taps + L·R + drain) + 1`` with
    the drain pass ``drain = 1 + T·H·W + DRAIN_STAGES`` (:func:`~spikeforge.ops.conv.drain_cycles`,
    :data:`~spikeforge.ops.conv.DRAIN_STAGES`), where ``R`` counts the occupied rows the taps reach and
    ``L`` is the spike memory's read latency: the pass's setup, its fetch and its registered last event,
    then a slot's registered occupancy word, search and reads take ``max(L + 1, 1 + its rows)`` cycles
    (the next slot's fetch overlaps them), and a row waits at most ``L`` cycles beyond its events
    (:func:`~spikeforge.ops.conv.scan_pass_cycles`)."""
    T, cin, cout, H, W = case.shape
    tiles = -(-cout // params.n_pe)
    k = case.weight.shape[-1]
    rows = 0
    for y0, y1, s in _masked(case, k):
        if s is not None:
            rows += int((case.spikes[:, :, y0:y1 + 1].sum(-1) > 0).sum())
    latency = conv.SPIKE_READ_LATENCY
    return tiles * (3 + (latency + 3) * cin * k * k + latency * rows + conv.drain_cycles(T, H, W)) + 1
