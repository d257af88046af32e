"""LIF unit: one integer LIF step for all lanes (docs/integer-semantics.md §3)."""

from amaranth import Module, Mux, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .logic import carry_save_sum

__all__ = ["LIFUnit"]


def _shifted_copies(value, constant):
    """``value · constant`` as shifted copies of ``value``, one per set bit of ``constant`` (no multiplier)."""
    return [value << bit for bit in range(constant.bit_length()) if constant >> bit & 1]


class LIFUnit(wiring.Component):
    """Combinational LIF step of ``n_pe`` lanes.

    ``H = V + (((X·2^F − V) · m) >> s)`` with the scaled input ``X·2^F`` given (``scaled``);
    ``spike = H ≥ θ``; ``v_next = spike ? 0 : H``. Computed as ``H = ((2^s − m) · V + m · X·2^F) >> s``,
    equal for integers (``V + ⌊a / 2^s⌋ = ⌊(a + 2^s · V) / 2^s⌋``), and the spike as the sign of
    ``(2^s − m) · V + m · X·2^F − θ·2^s`` (``⌊a / 2^s⌋ ≥ θ ⇔ a ≥ θ·2^s``), so that the compare runs beside
    the sum rather than after it: both are one carry-save level and one carry chain for τ = 2. This
    step closes the membrane's loop from one timestep to the next, so it is the drain's longest path.

    Ports
    -----
    scaled : In(ArrayLayout(signed(membrane_bits), n_pe))
        ``X·2^F``: this timestep's input (accumulated, biased) times ``2^frac_bits``.
    threshold : In(ArrayLayout(signed(membrane_bits), n_pe))
        Per-lane θ in membrane units.
    v : In(ArrayLayout(signed(membrane_bits), n_pe))
        Membrane after the previous step (0 at t = 0).
    h : Out(ArrayLayout(signed(membrane_bits), n_pe))
        Membrane before reset.
    spike : Out(n_pe)
        One bit per lane.
    v_next : Out(ArrayLayout(signed(membrane_bits), n_pe))
        Membrane after reset.
    """

    def __init__(self, params):
        self.params = params
        membrane = data.ArrayLayout(signed(params.membrane_bits), params.n_pe)
        super().__init__({"scaled": In(membrane), "threshold": In(membrane), "v": In(membrane),
                          "h": Out(membrane), "spike": Out(params.n_pe), "v_next": Out(membrane)})

    def elaborate(self, platform):
        m = Module()
        p = self.params
        s = p.decay_shift
        width = p.membrane_bits + s + 2      # room for (2^s − m)·V + m·X·2^F − θ·2^s
        keep = (1 << s) - p.decay_mult       # the part of V that stays
        for lane in range(p.n_pe):
            terms = _shifted_copies(self.v[lane], keep) + _shifted_copies(self.scaled[lane], p.decay_mult)
            # − θ·2^s = ~(θ·2^s) + 1
            over = carry_save_sum(m, terms + [~(self.threshold[lane] << s)], width, plus_one=True,
                                  name=f"over{lane}")
            h = carry_save_sum(m, terms, width, name=f"h{lane}")
            m.d.comb += [
                self.h[lane].eq(h >> s),
                self.spike[lane].eq(~over[-1]),
                self.v_next[lane].eq(Mux(self.spike[lane], 0, self.h[lane])),
            ]
        return m
