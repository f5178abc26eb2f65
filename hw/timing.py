"""Every latency the hardware states, and the cycle model composed from them.

Each pipelined block's latency is stated here (the block's docstring names it; the engine and
the requantiser build their pipelines from it) and a unit test holds the RTL to it
(tests/test_hw_units.py, test_hw_dsp.py); the cycle model below adds them up, so a change to a
block's pipeline is one edit here, and the tests that compare every op's counter on the RTL
with this model catch anything else. Nothing here is a hardware component: the host computes cycles without loading
the gateware.
"""

from __future__ import annotations

from .config import AcceleratorConfig
from .layout import SUM_WORDS, LayerDescriptor, OpKind, describe, groups

__all__ = ["FM_READ_LATENCY", "MULTIPLIER_LATENCY", "REQUANT_LATENCY", "RESIDUAL_READ_LATENCY",
           "ENGINE_STEP_STAGES",
           "ENGINE_LATENCY", "SKIP_DRAIN_LATENCY", "FIRE_PASS_OVERHEAD", "POOL_LATENCY", "SUM_LATENCY", "ADD_LATENCY",
           "RDATA_STAGE_LATENCY",
           "READER_LATENCY", "WRITER_LATENCY", "SDRAM_PHY_LATENCY", "OP_OVERHEAD", "END_CYCLES",
           "DMA_QUEUE_LATENCY", "LOAD_LATENCY", "STORE_LATENCY", "sequence_cycles",
           "engine_cycles", "ideal_cycles", "fire_cycles", "op_cycles", "transfer_cycles",
           "transfer_bounds", "network_cycles"]

# ---- what each block states ---------------------------------------------------------------------

# hw/conv_layer.py FeatureBuffer: the address registered per bank, into the block RAMs, their
# output registered beside them (a block RAM's clock-to-output is 6 ns of a 13.3 ns cycle, and
# a 16K-word memory spans the chip: the routes to it and from it need a cycle each).
FM_READ_LATENCY = 3
# hw/dsp.py RegisteredMultiplier: operands registered, then the product (the MULT18X18D's input
# and output registers).
MULTIPLIER_LATENCY = 2
# hw/conv_engine.py Requantizer: R0-R1 the two half products (a registered multiplier each),
# R1b both registered again, R2 their sum, R3a the rounding constant added, R3b the shift, R4
# clamp.
REQUANT_LATENCY = MULTIPLIER_LATENCY + 5
# hw/conv_engine.py, a step from its issue (S0) to its sum in the accumulator: the feature-map
# read (S1 when it arrives), S1b, S2, S3, the multiplier (S4, S4b), S4c, S5, S6.
ENGINE_STEP_STAGES = FM_READ_LATENCY + 6 + MULTIPLIER_LATENCY
# hw/conv_engine.py: the drain's read of a residual word (its address registered, then the
# buffer's read), which every drained sum waits for on its way to requantisation.
RESIDUAL_READ_LATENCY = 1 + FM_READ_LATENCY
# hw/conv_engine.py: cycles counted after the issue of a layer's last step beyond the drain's
# PO/PC cycles: the step stages, the residual read, requantisation, the cycle that sees the
# pipeline empty and the one in which ``busy`` drops (``done`` is high in the cycle after).
ENGINE_LATENCY = ENGINE_STEP_STAGES + RESIDUAL_READ_LATENCY + REQUANT_LATENCY + 2
# hw/conv_engine.py, zero-skipping: a drained row's partial sums and biases registered as they
# are read, summed in groups, then the groups' sums registered before they shift out.
SKIP_DRAIN_LATENCY = 3
# hw/fire.py: the cycle in which the Fire unit asserts the engine's start, per pass.
FIRE_PASS_OVERHEAD = 1
# hw/pool.py: from an input beat's acceptance to the output beat it completes being valid.
POOL_LATENCY = 2
SUM_LATENCY = 1
# hw/bypass.py: the products; their sum with the rounding constant; the shift; the clamp.
ADD_LATENCY = 4
# hw/runner.py BufferReader: from ``start`` to its first beat being valid (base registered,
# the memory read, the read-ahead FIFO's two registers).
READER_LATENCY = 3 + FM_READ_LATENCY
# hw/runner.py BufferWriter: ``done`` rises the cycle after the last write.
WRITER_LATENCY = 1
# hw/sdram.py: the controller's outputs pass one register on the way to the pins and the read
# data one register on the way back (the board's I/O registers, the simulation top's plain
# ones), with the chip's clock lagging the system clock: a READ's word reaches the controller
# CL + SDRAM_PHY_LATENCY cycles after the cycle it issues the READ.
SDRAM_PHY_LATENCY = 2
# hw/runner.py sequencer: fetch, decode, start; the END op's fetch, decode and the cycle that
# sees it.
OP_OVERHEAD = 3
END_CYCLES = 3


# ---- the cycle model ------------------------------------------------------------------------------

def engine_cycles(desc: LayerDescriptor, cfg: AcceleratorConfig) -> int:
    """The engine's own count for one layer, ``start`` to ``done``: one step per cycle, a
    pixel taking max(steps, PO/PC) cycles (the counters insert idle cycles while the drain is
    longer than the pixel); the last pixel owes no idle cycles, its sums then drain."""
    if cfg.zero_skipping:
        # One chunk: a pixel's words, its rows drained together, a row's sums registered.
        words = desc.pixel_words
        drain = groups(desc.out_channels, cfg.po) * (cfg.po // cfg.pc)
        pixels = desc.out_h * desc.out_w
        return (pixels - 1) * max(words, drain) + words + drain + ENGINE_LATENCY + SKIP_DRAIN_LATENCY
    steps = groups(desc.in_channels, cfg.pc) * desc.kernel * desc.kernel_w
    drain = cfg.po // cfg.pc
    pixels = desc.out_h * desc.out_w * groups(desc.out_channels, cfg.po)
    return (pixels - 1) * max(steps, drain) + steps + drain + ENGINE_LATENCY


def ideal_cycles(desc: LayerDescriptor, cfg: AcceleratorConfig) -> float:
    """Multiply-accumulates / MAC units: the cycles of a perfectly busy array."""
    return desc.macs / cfg.mac_units


def fire_cycles(descs, cfg: AcceleratorConfig) -> int:
    """The Fire unit (hw/fire.py): its three engine runs, each after the cycle that starts it."""
    return sum(engine_cycles(d, cfg) + FIRE_PASS_OVERHEAD for d in descs)


def op_cycles(kind: OpKind, cfg: AcceleratorConfig, desc: LayerDescriptor | None = None,
              in_words: int = 0, out_words: int = 0) -> int:
    """One program op, from its fetch to its counter's write (hw/runner.py).

    A convolution is the engine's run. A pooling op streams its input words through
    BufferReader -> unit -> BufferWriter one per cycle; a global sum's serializer writes each
    channel group's 32-bit sums as SUM_WORDS words, holding the stream for SUM_WORDS - 1
    cycles per group; an ADD streams ``in_words`` pairs, two beats each."""
    if kind == OpKind.CONV:
        return OP_OVERHEAD + engine_cycles(desc, cfg)
    if kind == OpKind.MAXPOOL:
        unit, stalls = POOL_LATENCY, 0
    elif kind == OpKind.ADD:             # word pairs: every word of both maps is one beat
        unit, stalls = ADD_LATENCY, in_words
    elif kind == OpKind.GLOBAL_SUM:
        unit, stalls = SUM_LATENCY, (SUM_WORDS - 1) * (out_words // SUM_WORDS)
    else:
        raise ValueError(f"op kind {kind!r} has no cycle model")
    return OP_OVERHEAD + READER_LATENCY + (in_words - 1) + stalls + unit + WRITER_LATENCY


# hw/runner.py's DMA queue: from a transfer's entry into the queue (the LOAD or STORE op's
# last cycle) to the queue's first cycle with it at the head, when the queue was empty.
DMA_QUEUE_LATENCY = 2
# hw/dma.py through hw/sdram.py, measured on the RTL with the chip model: a transfer's fewest
# cycles beyond one per SDRAM word, from its dispatch at the queue's head to the first cycle it
# no longer counts as outstanding (the unit's start, the controller's queue, ACTIVE, the CAS
# latency and the PHY's registers for a load, the last write, ``done``).
# hw/device.py: the two three-word FIFOs the SDRAM's read words pass between the controller
# and the runner's DMA units (amaranth.lib.fifo.SyncFIFOBuffered, each written, then out of its
# output register: 2 cycles).
RDATA_STAGE_LATENCY = 2 * 2
LOAD_LATENCY = 11 + RDATA_STAGE_LATENCY
STORE_LATENCY = 5 + FM_READ_LATENCY


def _transfer_words(cfg: AcceleratorConfig, target, dma: dict) -> int:
    from .layout import sdram_unit_words
    return dma["runs"] * dma["run_words"] * sdram_unit_words(cfg, target)


def _row_changes(cfg: AcceleratorConfig, target, dma: dict) -> int:
    """Times the transfer's SDRAM address moves to another (bank, row): at a ``cols``
    boundary inside a run, or where a run starts in another row than the last one ended."""
    import numpy as np

    from .layout import sdram_unit_words
    from .sdram_chip import MT48LC16M16A2
    k = sdram_unit_words(cfg, target)
    cols = MT48LC16M16A2.cols
    runs = np.arange(dma["runs"], dtype=np.int64)
    first = (dma["sdram_base"] + runs * dma["sdram_stride"]) * k
    last = first + dma["run_words"] * k - 1
    inside = int((last // cols - first // cols).sum())
    between = int((first[1:] // cols != last[:-1] // cols).sum())
    return inside + between


def transfer_bounds(cfg: AcceleratorConfig, kind: OpKind, target, dma: dict
                    ) -> tuple[int, int, int]:
    """(fewest, estimate, most) cycles a LOAD or STORE takes from its dispatch at the head of
    the DMA queue until it is no longer outstanding.

    Fewest: one per SDRAM word and the fixed latency. The controller serves one command at a
    time in order, so each move to another row stalls the stream for a PRECHARGE and an
    ACTIVE, and each refresh that falls inside the transfer for PRECHARGE ALL, tRFC and the
    row's reopening. Estimate: those stalls at their nominal cost, refreshes at the interval's
    rate. Most: each stall at its worst (the read pipeline drained and refilled as well), one
    more row opening, and every refresh the transfer's span can meet. When a refresh falls
    depends on the controller's history since power-up, which is why the model cannot be
    exact and the tests hold the RTL to these bounds."""
    from .sdram_chip import REFRESH_SLACK
    t = cfg.sdram_timings
    n = _transfer_words(cfg, target, dma)
    lo = (LOAD_LATENCY if kind == OpKind.LOAD else STORE_LATENCY) + n
    changes = _row_changes(cfg, target, dma)
    interval = t.refi - REFRESH_SLACK
    refresh = t.rp + t.rfc + t.rcd
    estimate = lo + changes * (t.rp + t.rcd) + round(lo / interval * refresh)
    worst_change = t.rp + t.rcd + t.cl + SDRAM_PHY_LATENCY + t.wr + 2
    base = lo + (changes + 1) * worst_change
    worst_refresh = refresh + worst_change
    refreshes = base // interval + 1
    hi = base + refreshes * worst_refresh
    while hi // interval + 1 > refreshes:          # the stalls lengthen the span
        refreshes = hi // interval + 1
        hi = base + refreshes * worst_refresh
    return lo, estimate, hi


def transfer_cycles(cfg: AcceleratorConfig, kind: OpKind, target, dma: dict) -> int:
    """A LOAD's or STORE's duration as the model estimates it (``transfer_bounds``)."""
    return transfer_bounds(cfg, kind, target, dma)[1]


def sequence_cycles(ops, queue: int) -> tuple[list[tuple[int, int]], int, int]:
    """The sequencer and its DMA queue (hw/runner.py), op by op: ``ops`` is a list of (kind,
    cycles, dma_wait, then_store), ``cycles`` being a unit op's own cycles (``op_cycles`` less
    OP_OVERHEAD) or a transfer's duration (``transfer_bounds``), ``then_store`` the duration
    of the STORE a unit op queues as it finishes (None: none). Returns each op's (counter,
    wait), the run's total (END included) and END's wait for the last transfers.

    An op fetched at cycle t reaches START at t + 2. A LOAD or STORE waits there until the
    queue has room, enters it and ends (its counter OP_OVERHEAD + wait); it reaches the head
    DMA_QUEUE_LATENCY cycles later or when the transfer before it finishes, whichever is
    later. Any other op waits until at most ``dma_wait`` transfers are outstanding (END: none),
    as the count registered a cycle before says, then runs; its STORE enters the queue in its
    last cycle, or as soon as there is room."""
    out = []
    pushed: list[int] = []          # cycle each transfer entered the queue
    popped: list[int] = []          # cycle it reached the head
    released: list[int] = []        # first cycle it is no longer outstanding

    def push(s: int, duration: int) -> int:
        """The transfer enters the queue at cycle s or, if the queue is full, at the first
        cycle with room; returns that cycle."""
        while sum(1 for p, q in zip(pushed, popped) if p < s <= q) >= queue:
            s = min(q for p, q in zip(pushed, popped) if p < s <= q) + 1
        pushed.append(s)
        head = max(s + DMA_QUEUE_LATENCY, released[-1] if released else 0)
        popped.append(head)
        released.append(head + duration)
        return s

    t = 0
    for kind, cycles, dma_wait, then_store in list(ops) + [(OpKind.END, 0, 0, None)]:
        ready = t + OP_OVERHEAD - 1
        if kind in (OpKind.LOAD, OpKind.STORE):
            s = push(ready, cycles)
            out.append((OP_OVERHEAD + s - ready, s - ready))
            t = s + 1
            continue
        allowed = 0 if kind == OpKind.END else dma_wait
        need = len(released) - 1 - allowed
        # (the sequencer sees a transfer finished a cycle after: it reads the count registered)
        s = max(ready, released[need] + 1) if need >= 0 else ready
        wait = s - ready
        if kind == OpKind.END:
            return out, s + 1, wait
        last = s + cycles
        if then_store is not None:
            q = push(last, then_store)
            wait += q - last
            last = q
        out.append((last - t + 1, wait))
        t = last + 1
    raise AssertionError("unreachable")


def network_cycles(network, cfg: AcceleratorConfig) -> dict[str, int]:
    """Cycles of every convolution unit of ``network`` (a Fire module as one Fire unit run,
    other convolutions as single engine runs), keyed by node name, for design sweeps. Pooling
    and the bypass add are not counted here; host.compiler's programs count every op."""
    from golden.network import Bypass, Conv, Fire
    shapes = network.shapes()
    cycles = {}
    for i, node in enumerate(network.nodes):
        srcs = network.node_inputs(i)
        _, h, w = shapes[srcs[-1] if isinstance(node, Bypass) else srcs[0]]
        descs = [describe(spec, h, w) for spec in node.convs()]
        if isinstance(node, Fire):
            cycles[node.name] = fire_cycles(descs, cfg)
        elif isinstance(node, (Conv, Bypass)) and descs:
            cycles[node.name] = sum(engine_cycles(d, cfg) for d in descs)
    return cycles
