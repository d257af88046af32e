"""The hardware/software contract, defined once and free of torch.

Every other package derives from these modules: the Amaranth hardware (``spikeforge.hw``), the
firmware compiler and host driver (``spikeforge.firmware``), the golden model and the tests.

* :mod:`.params` — build parameters of the accelerator (lanes, widths, capacities, memory depths).
* :mod:`.regmap` — control/status registers, memory windows, identification registers.
* :mod:`.descriptor` — the layer descriptor: one word of program memory per operation.
* :mod:`.layout` — address layouts of the spike and stream memories, multi-lane word packing.
* :mod:`.encoding` — the input encoding (integer pixels) of a model configuration.
* :mod:`.bits` — integer helpers: powers of two, two's complement widths, ``$readmemh`` words.
* :mod:`.files` — outputs that appear complete or not at all.
* :mod:`.fpga` — the ECP5 parts the accelerator is built for, their capacities and package pins.
"""
