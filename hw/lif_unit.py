"""LIF unit: one integer LIF step for all lanes (docs/integer-semantics.md §3)."""

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["LIFUnit", "times_constant"]


def times_constant(value, constant):
    """``value * constant`` as a sum of shifted copies (no multiplier cell)."""
    terms = [value << bit for bit in range(constant.bit_length()) if constant >> bit & 1]
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


class LIFUnit(wiring.Component):
    """Combinational LIF step of ``n_pe`` lanes.

    ``H = V + ((((X << F) − V) · m) >> s)`` with ``X = acc + bias`` and ``F = frac_bits``; ``spike = H ≥ θ``;
    ``v_next = spike ? 0 : H``. Computed as ``H = ((2^s − m) · V + m · (X << F)) >> s``, equal for integers
    (``V + ⌊a / 2^s⌋ = ⌊(a + 2^s · V) / 2^s⌋``), which for τ = 2 (``m / 2^s = 1/2``) is one addition on the
    membrane's path instead of a subtraction and an addition.

    Ports
    -----
    acc : In(ArrayLayout(signed(acc_bits), n_pe))
        Accumulated input of this timestep.
    bias : In(ArrayLayout(signed(acc_bits), n_pe))
        Per-lane bias.
    threshold : In(ArrayLayout(signed(membrane_bits), n_pe))
        Per-lane θ in membrane units.
    v : In(ArrayLayout(signed(membrane_bits), n_pe))
        Membrane after the previous step (0 at t = 0).
    frac_bits : In(4)
        Fractional bits F of the membrane (at most the build parameter ``frac_bits``), so that one
        build serves networks of any T.
    h : Out(ArrayLayout(signed(membrane_bits), n_pe))
        Membrane before reset.
    spike : Out(n_pe)
        One bit per lane.
    v_next : Out(ArrayLayout(signed(membrane_bits), n_pe))
        Membrane after reset.
    """

    def __init__(self, params):
        self.params = params
        acc = data.ArrayLayout(signed(params.acc_bits), params.n_pe)
        membrane = data.ArrayLayout(signed(params.membrane_bits), params.n_pe)
        super().__init__({"acc": In(acc), "bias": In(acc), "threshold": In(membrane), "v": In(membrane),
                          "frac_bits": In(4),
                          "h": Out(membrane), "spike": Out(params.n_pe), "v_next": Out(membrane)})

    def elaborate(self, platform):
        m = Module()
        p = self.params
        for lane in range(p.n_pe):
            # X << F fits the membrane (membrane_bits >= acc_bits + frac_bits + 1): bound the shift's width
            scaled = Signal(signed(p.membrane_bits), name=f"scaled{lane}")
            m.d.comb += scaled.eq((self.acc[lane] + self.bias[lane]) << self.frac_bits)
            keep = (1 << p.decay_shift) - p.decay_mult     # the part of V that stays
            kept = times_constant(self.v[lane], keep) if keep else 0
            h = (kept + times_constant(scaled, p.decay_mult)) >> p.decay_shift
            m.d.comb += [
                self.h[lane].eq(h),
                self.spike[lane].eq(self.h[lane] >= self.threshold[lane]),
                self.v_next[lane].eq(Mux(self.spike[lane], 0, self.h[lane])),
            ]
        return m
