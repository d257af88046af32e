"""The control bus's address layout follows the build parameters: every field as wide as needed and no
wider, every window's words reachable, the registers at the same addresses in every build."""

import random

import pytest

from spikeforge.interface import regmap
from spikeforge.interface.external import SPILL, external_bytes, external_words, spill_shape, table_offsets
from spikeforge.interface.layout import spike_row_layout, stream_word_layout
from spikeforge.interface.params import AcceleratorParams
from spikeforge.tests.helpers import DIGITS

#: Build parameters of different shapes: the digits accelerator, the defaults, words of one slot, many descriptors.
PARAMS = [AcceleratorParams(**DIGITS), AcceleratorParams(),
          AcceleratorParams(n_pe=2, acc_bits=16, membrane_bits=21, max_w=16, spike_groups=4, stream_tiles=1),
          AcceleratorParams(n_pe=4, acc_bits=12, membrane_bits=17, max_h=4, max_w=4, spike_groups=2, stream_tiles=1,
                            program_depth=3000)]


def test_the_digits_layout():
    """Logit words of 16 × 30 bits: 15 slots, 4 bits (stream words of 16 × 15 bits, 8 slots); the spike
    memory's 32 × 4 × 8 = 1024 words, 10 bits; six windows, 3 bits: 19 address bits instead of 32."""
    layout = regmap.address_layout(AcceleratorParams(**DIGITS))
    assert layout == regmap.AddressLayout(window_bits=3, slot_bits=4, offset_bits=10)
    assert layout.address_bits == regmap.control_address_bits(AcceleratorParams(**DIGITS)) == 19
    assert [layout.shift(field) for field in regmap.ADDRESS_FIELDS] == [0, 2, 12, 16]


@pytest.mark.parametrize("params", PARAMS, ids=range(len(PARAMS)))
def test_every_field_is_as_wide_as_needed_and_no_wider(params):
    layout = regmap.address_layout(params)
    depths = [regmap.window_depth(w.name, params) for w in regmap.WINDOWS]
    words = [regmap.slots(w.name, params) for w in regmap.WINDOWS]
    assert max(depths) <= 1 << layout.offset_bits
    assert layout.offset_bits == 0 or max(depths) > 1 << (layout.offset_bits - 1)
    assert max(words) <= 1 << layout.slot_bits
    assert layout.slot_bits == 0 or max(words) > 1 << (layout.slot_bits - 1)
    assert len(regmap.WINDOWS) <= 1 << layout.window_bits < 2 * len(regmap.WINDOWS)


@pytest.mark.parametrize("params", PARAMS, ids=range(len(PARAMS)))
def test_window_depths_are_the_memories_the_hardware_decodes(params):
    assert regmap.window_depth("SPIKES", params) == 1 << spike_row_layout(params).size
    assert regmap.window_depth("STREAM", params) == 1 << stream_word_layout(params).size
    assert regmap.window_depth("OP_CYCLES", params) == params.program_depth
    assert regmap.window_depth("OVERFLOW_LOG", params) == params.program_depth
    assert regmap.window_depth("CSR", params) == max(r.offset for r in regmap.REGISTERS) + 1


@pytest.mark.parametrize("params", PARAMS, ids=range(len(PARAMS)))
def test_addresses_decode_to_their_fields(params):
    layout, rng = regmap.address_layout(params), random.Random(0)
    for w in regmap.WINDOWS:
        for _ in range(20):
            offset = rng.randrange(regmap.window_depth(w.name, params))
            slot = rng.randrange(regmap.slots(w.name, params))
            addr = regmap.address(params, w.name, offset, slot)
            assert addr < 1 << layout.address_bits and addr % 4 == 0
            fields = {name: addr >> layout.shift(name) & ((1 << bits) - 1)
                      for name, bits in layout.field_bits().items()}
            assert fields == {"byte": 0, "offset": offset, "slot": slot, "window": w.index}
    assert regmap.address(params, "SPIKES") == 1 << layout.shift("window")


@pytest.mark.parametrize("params", PARAMS, ids=range(len(PARAMS)))
def test_registers_lie_at_the_same_addresses_in_every_build(params):
    for r in regmap.REGISTERS:
        assert regmap.address(params, "CSR", r.offset) == regmap.register_address(r.name) == 4 * r.offset


def test_addresses_outside_a_window_are_refused():
    params = AcceleratorParams(**DIGITS)
    with pytest.raises(ValueError, match=r"offset in window SPIKES must lie in \[0, 1024\), not 1024"):
        regmap.address(params, "SPIKES", 1024)
    with pytest.raises(ValueError, match=r"offset in window OP_CYCLES must lie in \[0, 16\), not 16"):
        regmap.address(params, "OP_CYCLES", 16)
    with pytest.raises(ValueError, match=r"slot of a LOGITS word must lie in \[0, 15\), not 15"):
        regmap.address(params, "LOGITS", 0, 15)
    with pytest.raises(ValueError, match=r"slot of a STREAM word must lie in \[0, 8\), not 8"):
        regmap.address(params, "STREAM", 0, 8)
    with pytest.raises(ValueError, match=r"slot of a CSR word must lie in \[0, 1\), not 1"):
        regmap.address(params, "CSR", 0, 1)
    with pytest.raises(KeyError, match="no window 'PROGRAM'"):
        regmap.address(params, "PROGRAM")


def test_the_address_register_holds_the_widths():
    params = AcceleratorParams(**DIGITS, memory_address_bits=24)
    assert regmap.register("ADDRESS").offset == 7
    assert regmap.identity_values(params)["ADDRESS"] == 10 | 4 << 8 | 3 << 16 | 24 << 24
    assert regmap.identity_values(params)["VERSION"] == regmap.VERSION == 0x0600


def test_the_widths_register_holds_the_logits_width():
    params = AcceleratorParams(**DIGITS)
    assert regmap.identity_values(params)["WIDTHS"] == 8 | 15 << 8 | 20 << 16 | 30 << 24
    assert regmap.word_bits("LOGITS", params) == 16 * 30 and regmap.word_bits("STREAM", params) == 16 * 15


@pytest.mark.parametrize("overrides, message", [
    ({"memory_address_bits": 11}, "memory_address_bits must be an integer in 12..32, not 11"),
    ({"memory_address_bits": 33}, "memory_address_bits must be an integer in 12..32, not 33"),
    ({"spike_groups": 1 << 18}, r"these parameters need 33 control address bits \(3 window, 4 slot, 24 offset, 2 "
                                r"byte\); the control bus has at most 32"),
])
def test_parameters_beyond_the_address_spaces_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        AcceleratorParams(**overrides)


def test_external_bytes_are_the_image_words():
    tables = {"PROGRAM": (205, [1, 2, 3]), "WEIGHTS": (128, [4] * 300), "BIAS": (480, [5] * 7), "THRESHOLD": (7, [])}
    shapes = {name: (bits, len(rows)) for name, (bits, rows) in tables.items()}
    assert external_bytes(shapes) == 4 * len(external_words(tables)) == 4096 + 8192 + 4096
    assert external_bytes({}) == 0
    # the spill region follows the image on a region boundary, rows of one spike-memory group word
    params = AcceleratorParams(n_pe=16, max_w=16, spill_rows=100)
    spill = spill_shape(params)
    assert spill == (256, 100)
    offsets = table_offsets({**shapes, SPILL: spill})
    assert offsets[SPILL] == 4096 + 8192 + 4096 + 4096 and offsets["BIAS"] == table_offsets(shapes)["BIAS"]
    assert external_bytes({**shapes, SPILL: spill}) == offsets[SPILL] + 100 * 32
