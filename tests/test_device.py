"""The device end to end: protocol, compiler, driver, the golden device, and the simulated
board (Verilator, the RTL of hw/device.py) with the default model and the authors' SqueezeNet;
fault injection on the link; one request stream replayed into the golden device and the RTL,
every reply byte compared."""

from __future__ import annotations

import random
import socket
import struct
import time

import numpy as np
import pytest

from golden import numerics as nx
from golden.digits import calibration_set, load_digits_split
from golden.engine import Golden
from golden.formats import load_model
from golden.network import (InputSpec, cifar10_squeezenet, digits_net, squeezenet_v1_0,
                            squeezenet_v1_1, squeezenext)
from golden.quantize import quantize
from host.compiler import UnsupportedNetworkError, compile_network
from host.driver import DeviceError, Driver
from host.faults import run_campaign
from host.golden_device import GoldenDevice
from host.transport import FaultyTransport, GoldenTransport
from hw import protocol as proto
from hw.config import board_config, chip_config
from hw.layout import DMA_WAIT_BITS, OpKind, encode_op, pack_entries, unpack_entries, weight_entries
from hw.protocol import Command, RunState, Status, Target
from hw.timing import END_CYCLES

from conftest import ROOT, SHARED, random_float_model

CFG = board_config()
# The differential request stream runs on the all-on-chip test configuration: with no
# transfers, every counter of the RTL equals the golden device's, byte for byte.
CHIP = chip_config()


@pytest.fixture(scope="module")
def digits():
    model = load_model(ROOT / "models" / "digits-squeezenet.npz")
    q = quantize(model, calibration_set(), 8, nx.DEFAULT_VALUE_BITS)
    _, _, test_x, _ = load_digits_split()
    return q, compile_network(q, CFG), test_x[:6]


# ---- protocol and compiler ----------------------------------------------------------------

def test_frames_round_trip_and_garbage_between_them_is_skipped():
    frames = [proto.encode_frame(Command.WRITE, s, bytes(range(s))) for s in range(5)]
    stream = b"\x00\xa5\x11" + frames[0] + b"\xff\xa5" + b"".join(frames[1:])
    parser = proto.FrameParser()
    got = parser.feed(stream[:7]) + parser.feed(stream[7:])
    assert [(c, s, p, k) for c, s, p, k in got] == [
        (Command.WRITE, s, bytes(range(s)), Status.OK) for s in range(5)]


def test_a_corrupted_frame_is_reported_not_accepted():
    frame = bytearray(proto.encode_frame(Command.READ, 9, b"abc"))
    frame[7] ^= 0x10
    assert proto.FrameParser().feed(bytes(frame)) == [(Command.READ, 9, b"arc", Status.BAD_CRC)]
    too_long = bytes(proto.SYNC) + struct.pack("<BBH", 1, 3, proto.MAX_PAYLOAD + 1)
    assert proto.FrameParser().feed(too_long)[0][3] == Status.BAD_LENGTH


def test_weight_entries_bridge_long_zero_runs_and_pack_lsb_first():
    idx = np.zeros(100, np.int64)
    idx[[0, 3, 40, 99]] = [5, 7, 9, 255]
    entries = weight_entries(idx)
    # 40 - 3 - 1 = 36 zeros: two fillers of 16 positions, then a gap of 4
    assert entries.tolist() == [[0, 5], [2, 7], [15, 0], [15, 0], [4, 9], [15, 0], [15, 0],
                                [15, 0], [10, 255]]
    pos, dense = -1, np.zeros(100, np.int64)
    for gap, index in entries:
        pos += gap + 1
        dense[pos] = index
    np.testing.assert_array_equal(dense, idx)
    assert pack_entries(np.array([[1, 2], [3, 4]]), 6) == bytes([0x21, 0x0C, 0x01])   # 0x21 | 0x43 << 10
    for bits in (4, 6, 8):
        some = entries % [16, 1 << bits]
        np.testing.assert_array_equal(
            unpack_entries(pack_entries(some, bits), len(some), bits), some)


def _random_model(net, seed=0, density=0.5):
    """Seeded random weights (He-scaled), pruned to ``density``, quantized at 8 bits on two
    random calibration inputs."""
    from golden.compress import prune
    rng = np.random.default_rng(seed + 1)
    shape = (net.input.channels, net.input.height, net.input.width)
    calib = [rng.normal(0, 40, shape).astype(np.float32) for _ in range(2)]
    return quantize(prune(random_float_model(net, seed), density), calib, 8), rng


def test_compiler_places_both_bypasses_and_names_what_does_not_fit():
    """With the maps in the SDRAM the simple bypass is an ADD op and the complex one a pass
    that adds its residual; the all-on-chip test configuration has no bypass (refused by
    name, with what to do instead). SqueezeNet v1.0's complex bypass needs more ops than the
    program memory holds: it runs in segments, each at most the memory's depth with its END,
    whole nodes where they fit."""
    q, _ = _random_model(digits_net(bypass="simple"))
    assert any(op.kind == OpKind.ADD for op in compile_network(q, CFG).ops)
    with pytest.raises(UnsupportedNetworkError, match="bypass2: the all-on-chip configuration "
                                                      "has no bypass add"):
        compile_network(q, CHIP)
    q, _ = _random_model(digits_net(bypass="complex"))
    residual = [op.name for op in compile_network(q, CFG).ops
                if op.fields.get("unit", {}).get("residual_mult")]
    assert residual and all(name.startswith("bypass4") for name in residual)
    q, _ = _random_model(squeezenet_v1_0("complex"))
    prog = compile_network(q, CFG)
    segments = prog.segment_ranges()
    assert len(segments) == 2 and segments[0][0] == 0 and segments[-1][1] == len(prog.ops)
    assert all(b == c for (_, b), (c, _) in zip(segments, segments[1:]))
    assert all(end - start + 1 <= CFG.program_depth for start, end in segments)
    starts = {ops[0] for ops in prog.node_ops.values()}
    assert segments[1][0] in starts                        # a boundary between nodes
    assert [len(prog.segment_words(k)) for k in range(2)] == [b - a + 1 for a, b in segments]


def test_a_value_that_does_not_fit_its_field_is_refused_by_name():
    """Every descriptor and op field is as wide as the configuration says, and a value that
    does not fit is an error naming the layer, the field, the value and the limit, never a
    silently truncated field."""
    from hw.config import AcceleratorConfig
    from hw.layout import FieldRangeError, LayerDescriptor, descriptor_layout, unpack_struct
    cfg = AcceleratorConfig()
    wide = LayerDescriptor(16, 16, 4, 1500, 4, 1500, 1, 1, 0, 1 << 15, 16)
    with pytest.raises(FieldRangeError, match=r"conv9: in_w = 1500 does not fit its 10-bit "
                                              r"field \(0\.\.1023\)"):
        wide.pack(cfg, "conv9")
    # The field follows the configuration: a device built for wider maps takes it, and the
    # descriptor word unpacks to the same layer.
    big = AcceleratorConfig(max_side=2047, fm_depth=1 << 16)
    fields = unpack_struct(descriptor_layout(big), wide.pack(big))
    assert LayerDescriptor.of_fields(fields, big) == (wide, 0, 0)
    # A whole network: the compiler names the feature map that is too large.
    small = AcceleratorConfig(fm_depth=1 << 19, squeeze_depth=1 << 15, weight_depth=1 << 15,
                              codebook_tables=32, bias_depth=256, max_side=15)
    with pytest.raises(UnsupportedNetworkError, match="input: a 1 x 16 x 16 feature map"):
        compile_network(quantize(load_model(ROOT / "models" / "digits-squeezenet.npz"),
                                 calibration_set(), 8), small)


def test_a_memory_depth_the_addressing_cannot_wrap_is_refused():
    from hw.config import AcceleratorConfig
    with pytest.raises(ValueError, match="fm_depth = 3000: it must be a power of two.*4096"):
        AcceleratorConfig(fm_depth=3000)


def test_weight_units_round_trip_indices_and_signed_values():
    """The dense weight words in the SDRAM: a byte per index with codebook tables, the values'
    bits packed without (the board's device at 128 MAC units), each back as the memory keeps
    it; a value too wide for the configuration is refused by name."""
    from hw.config import AcceleratorConfig
    from hw.layout import FieldRangeError, weight_lanes, weight_lanes_of_units, weight_units
    rng = np.random.default_rng(5)
    for cfg, lo, hi in ((AcceleratorConfig(), 0, 256),
                        (AcceleratorConfig(codebook_tables=0), -2048, 2048),
                        (AcceleratorConfig(mac_units=128, output_lanes=32, codebook_tables=0),
                         -2048, 2048)):
        w = rng.integers(lo, hi, (40, 20, 3, 3))
        lanes = weight_lanes(w, cfg)
        units = weight_units(lanes, cfg)
        assert units.shape == (len(lanes), cfg.lanes if cfg.codebook_tables
                               else cfg.lanes * cfg.value_bits // 8)
        np.testing.assert_array_equal(weight_lanes_of_units(units, cfg), lanes)
    with pytest.raises(FieldRangeError, match="conv7: a weight of 2048 does not fit the "
                                              "configuration's 12-bit values"):
        weight_lanes(np.full((16, 4, 1, 1), 2048), AcceleratorConfig(codebook_tables=0), "conv7")


def test_a_device_without_codebook_tables_takes_weights_only_by_load(digits):
    """Weight words of values come from the SDRAM: the on-chip compiler refuses them by name,
    and the golden device refuses a WRITE of the link's sparse weight entries."""
    from dataclasses import replace
    q, _, _ = digits
    with pytest.raises(UnsupportedNetworkError, match="no codebook tables.*maps_in_sdram"):
        compile_network(q, replace(chip_config(), codebook_tables=0))
    driver = Driver(GoldenTransport(GoldenDevice(board_config(128))), reply_timeout=0.01)
    with pytest.raises(DeviceError, match="BAD_ARGUMENT"):
        driver.request(Command.WRITE, proto.args(Target.WEIGHTS, 0, 1, 8) + bytes(2))


# ---- the golden device ----------------------------------------------------------------------

def _check_cycles(driver, prog, cycles, exact=False):
    """Every op's counter less its wait for the DMA queue is the cycle model's, exactly; the
    total is the counters' sum with END's (one a segment) and lies inside the model's bound
    (with ``exact``, the golden device: every counter and wait equal to the model's estimate)."""
    counters, waits = driver.read_counters(prog), driver.read_waits(prog)
    ends = len(prog.segment_ranges())
    assert cycles == sum(counters.values()) + ends * END_CYCLES + waits["END"]
    wrong = {op.name: (counters[op.name], waits[op.name], prog.busy_cycles(op))
             for op in prog.ops if counters[op.name] - waits[op.name] != prog.busy_cycles(op)}
    assert not wrong
    lo, hi = prog.cycle_bounds()["total"]
    assert lo <= cycles <= hi
    if exact:
        per, model_waits, total = prog.timeline()
        assert (counters, waits, cycles) == (per, model_waits, total)
    return counters, waits


def _runs_bit_exact_with_the_cycle_model(driver, q, prog, images, exact=False):
    """Upload, then every image: logits equal to golden; the last run's cycles as
    ``_check_cycles`` says."""
    driver.load_model(prog)
    golden = Golden(q)
    for x in images:
        driver.load_image(prog, x)
        cycles = driver.run(prog)
        np.testing.assert_array_equal(driver.read_logits(prog), golden(x))
    assert any(op.is_transfer for op in prog.ops) == CFG.maps_in_sdram
    return _check_cycles(driver, prog, cycles, exact)


def test_golden_device_runs_the_program_bit_exact_with_the_cycle_model(digits):
    driver = Driver(GoldenTransport(GoldenDevice(CFG)), reply_timeout=0.01)
    _runs_bit_exact_with_the_cycle_model(driver, *digits, exact=True)


def test_128_mac_units_with_weight_words_of_values_on_the_golden_device(digits):
    """The board's device at 128 MAC units (32 x 4, no codebook tables): the digits model
    bit-exact, every counter the cycle model's."""
    q, _, images = digits
    prog = compile_network(q, board_config(128))
    assert prog.cfg.po == 32 and not prog.cfg.codebook_tables
    from hw.layout import DMATarget
    assert not any(op.fields["dma"]["target"] == DMATarget.CODEBOOK for op in prog.ops
                   if op.is_transfer)                 # no codebook LOADs
    driver = Driver(GoldenTransport(GoldenDevice(prog.cfg)), reply_timeout=0.01)
    _runs_bit_exact_with_the_cycle_model(driver, q, prog, images[:3], exact=True)


@pytest.mark.parametrize("skip", [False, True], ids=["dense", "zero-skipping"])
def test_loads_queued_earlier_shorten_the_run_and_the_latest_landing_transfers_stay_exact(skip):
    """The plan's last step (host.sdram_plan._hoist_loads) queues LOADs earlier, weights in
    pieces: SqueezeNet v1.1 with sparse random weights runs in fewer modelled cycles than in
    the order the plan writes, and on the golden device, which carries out every transfer as
    late as the DMA queue lets it finish, every logit equals golden. The same program with
    every ``dma_wait`` at "never wait" does not (a wrong answer, or with zero-skipping words
    the golden device's refusal of a chunk whose words are not all there): the check can
    fail."""
    import dataclasses
    from host import sdram_plan
    cfg = board_config(zero_skipping=skip)
    q, rng = _random_model(squeezenet_v1_1(), 11)
    prog = compile_network(q, cfg)
    assert sum(op.name.endswith("/weights#1") for op in prog.ops) > 0        # pieces
    as_written = min((sdram_plan._compile(q, cfg, r, {}) for r in (3, 4, 5)),
                     key=lambda p: p.timeline()[2])
    assert prog.timeline()[2] < as_written.timeline()[2]
    x = rng.integers(0, 256, (3, 224, 224), dtype=np.uint8)
    want = Golden(q)(x)
    driver = Driver(GoldenTransport(GoldenDevice(cfg)), reply_timeout=0.01)
    driver.load_model(prog)
    driver.load_image(prog, x)
    driver.run(prog)
    np.testing.assert_array_equal(driver.read_logits(prog), want)
    never = (1 << DMA_WAIT_BITS) - 1
    ops = [dataclasses.replace(op, fields={**op.fields, "dma_wait": never})
           if "dma_wait" in op.fields else op for op in prog.ops]
    eager = dataclasses.replace(prog, ops=ops, words=[
        encode_op({"kind": op.kind, **op.fields}, cfg, op.name) for op in ops] + prog.words[-1:])
    driver.load_model(eager)
    driver.load_image(eager, x)
    try:
        driver.run(eager)
        wrong = not np.array_equal(driver.read_logits(eager), want)
    except ValueError as e:
        wrong = "steps" in str(e)
    assert wrong


def test_a_program_longer_than_the_program_memory_runs_in_segments_on_the_golden_device():
    """1.0-SqNxt-23 (1,071 ops for a 1,024-op memory): two segments, each written before its
    RUN, every logit equal to golden, every counter and wait equal to the cycle model's (each
    segment from an empty DMA queue); ``run()`` without the program runs the uploaded one,
    whole; the counters of a segmented program are refused before it ran."""
    q, rng = _random_model(squeezenext(1.0, "23"), 13)
    prog = compile_network(q, CFG)
    assert len(prog.segment_ranges()) == 2
    driver = Driver(GoldenTransport(GoldenDevice(CFG)), reply_timeout=0.01)
    driver.load_model(prog)
    with pytest.raises(ValueError, match="runs in segments.*run it first"):
        driver.read_counters(prog)
    x = rng.integers(0, 256, (3, 227, 227), dtype=np.uint8)
    driver.load_image(prog, x)
    cycles = driver.run()
    np.testing.assert_array_equal(driver.read_logits(prog), Golden(q)(x))
    _check_cycles(driver, prog, cycles, exact=True)


def test_driver_names_refusals():
    driver = Driver(GoldenTransport(GoldenDevice(CFG)), reply_timeout=0.01)
    with pytest.raises(DeviceError, match="UNKNOWN_COMMAND"):
        driver.request(0x42)
    with pytest.raises(DeviceError, match="BAD_ARGUMENT"):
        driver.request(Command.READ, proto.args(Target.FEATURE, 0, proto.MAX_PAYLOAD))


def test_fault_injection_on_the_golden_device_never_gives_a_wrong_answer():
    r = run_campaign("golden", range(10), rate=0.003, requests_per_seed=200, cfg=CFG)
    print(r)
    assert r.faults > 500 and r.retries > 100
    assert r.wrong == 0
    assert r.correct >= 0.9 * r.requests / 2


def test_fault_injection_on_a_whole_inference(digits):
    """Model upload, image, run and result over a link that damages 1 byte in 5000."""
    q, prog, images = digits
    golden = Golden(q)
    link = FaultyTransport(GoldenTransport(GoldenDevice(CFG)), 2e-4, seed=7)
    driver = Driver(link, reply_timeout=0.01, retries=20)
    driver.load_model(prog)
    for x in images[:3]:
        driver.load_image(prog, x)
        driver.run()
        np.testing.assert_array_equal(driver.read_logits(prog), golden(x))
    assert link.faults.total > 5 and driver.stats.retries > 0


# ---- the simulated board ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def board():
    from sim.board.build import BoardProcess
    with BoardProcess(CFG, quiet=True) as b:
        yield b


def _sim_driver(board, retries=10, reply_timeout=1.0):
    from host.transport import SerialTransport
    return Driver(SerialTransport(board.url), reply_timeout=reply_timeout, retries=retries)


def test_simulated_board_classifies_digits_bit_exact_with_the_cycle_model(board, digits):
    driver = _sim_driver(board)
    _runs_bit_exact_with_the_cycle_model(driver, *digits)
    driver.transport.close()


def test_the_simulated_board_at_128_mac_units_is_bit_exact_with_the_cycle_model(digits):
    """The RTL of the 128-unit device (32 x 4, weight words of values): every logit golden's,
    every op's busy cycles the model's, the total inside its bound; the link's weight entries
    refused by name (weights come by LOAD only)."""
    from sim.board.build import BoardProcess
    q, _, images = digits
    prog = compile_network(q, board_config(128))
    with BoardProcess(prog.cfg, quiet=True) as b:
        driver = _sim_driver(b)
        _runs_bit_exact_with_the_cycle_model(driver, q, prog, images[:2])
        with pytest.raises(DeviceError, match="BAD_ARGUMENT"):
            driver.request(Command.WRITE, proto.args(Target.WEIGHTS, 0, 1, 8) + bytes(2))
        driver.transport.close()


def test_small_tiles_make_bands_chunks_and_prefetches_and_stay_bit_exact_on_the_rtl(digits):
    """Tiles a few hundred words deep and a weight memory of 64 words: every layer of the
    digits model in several bands, convolutions in output chunks whose weights load into the
    halves of the weight memory beside the pass before, Fire modules banded with their halo and
    whole-squeeze; on the RTL with the SDRAM model bit-exact, busy cycles exact, total inside
    the bound."""
    from dataclasses import replace

    from sim.board.build import BoardProcess
    q, _, images = digits
    small = replace(CFG, fm_depth=1024, fm_out_depth=512, weight_depth=64, bias_depth=2,
                    squeeze_depth=512, codebook_tables=4)
    prog = compile_network(q, small)
    names = [op.name for op in prog.ops]
    assert sum(n.endswith("/load") for n in names) > len(prog.node_ops)       # bands
    assert sum("/weights" in n for n in names) > len(q.convs)                 # chunks
    assert any(op.fields.get("then_store") for op in prog.ops)
    assert any(0 < op.fields.get("dma_wait", 0) < 7 for op in prog.ops)      # overlap
    with BoardProcess(small, quiet=True) as b:
        from host.transport import SerialTransport
        driver = Driver(SerialTransport(b.url), reply_timeout=1.0)
        driver.load_model(prog)
        golden = Golden(q)
        for x in images[:2]:
            driver.load_image(prog, x)
            cycles = driver.run()
            np.testing.assert_array_equal(driver.read_logits(prog), golden(x))
        _check_cycles(driver, prog, cycles)
        driver.transport.close()


@pytest.mark.parametrize("bits", [6, 4])
def test_simulated_board_runs_narrower_indices(board, bits):
    """6- and 4-bit indices: narrower entries on the wire, the same decoder."""
    model = load_model(ROOT / "models" / "digits-squeezenet.npz")
    q = quantize(model, calibration_set(), bits, nx.DEFAULT_VALUE_BITS)
    prog = compile_network(q, CFG)
    driver = _sim_driver(board)
    driver.load_model(prog)
    x = load_digits_split()[2][0]
    driver.load_image(prog, x)
    driver.run()
    np.testing.assert_array_equal(driver.read_logits(prog), Golden(q)(x))
    driver.transport.close()


# The UART's bit time on the simulated board: short, so that a whole upload takes seconds (the
# same logic as a board's 25 cycles a bit at 75 MHz, tested at those bit times in test_uart.py).
UART_SIM_DIVISOR = 8


@pytest.fixture(scope="module")
def uart_board():
    from sim.board.build import BoardProcess
    with BoardProcess(CFG, quiet=True, uart_divisor=UART_SIM_DIVISOR) as b:
        yield b


def test_the_digits_model_through_the_uart_at_bit_level_is_bit_exact(uart_board, digits):
    """The device behind its UART (hw/serial_device.py) in Verilator, the harness sending and
    sampling every bit: upload, images, runs and results through the serial lines, every logit
    equal to golden and every op's cycles equal to the model."""
    # (every bit simulated: on a loaded machine a reply can take longer than a second of wall
    # time, and a retry would then be the host's impatience, not the link's fault)
    driver = _sim_driver(uart_board, reply_timeout=10.0)
    _runs_bit_exact_with_the_cycle_model(driver, *digits)
    assert driver.stats.retries == 0
    driver.transport.close()


def _raw(board):
    s = socket.create_connection(("127.0.0.1", board.port))
    s.settimeout(5)
    return s


def _replies(sock, n):
    parser, got = proto.FrameParser(), []
    deadline = time.monotonic() + 10
    while len(got) < n and time.monotonic() < deadline:
        got += parser.feed(sock.recv(65536))
    return got


def test_simulated_board_answers_bad_frames_with_errors_and_never_wedges(board):
    s = _raw(board)
    bad_crc = bytearray(proto.encode_frame(Command.IDENTIFY, 1))
    bad_crc[-1] ^= 0xFF
    too_long = bytes(proto.SYNC) + struct.pack("<BBH", Command.WRITE, 3, proto.MAX_PAYLOAD + 1)
    s.sendall(bytes(bad_crc) + proto.encode_frame(0x42, 2) + too_long
              + b"\x00\xa5garbage\x5a" + proto.encode_frame(Command.STATUS, 4))
    got = [(code, seq) for code, seq, _, check in _replies(s, 4) if check == Status.OK]
    assert got == [(Status.BAD_CRC, 1), (Status.UNKNOWN_COMMAND, 2), (Status.BAD_LENGTH, 3),
                   (Status.OK, 4)]
    # A frame cut short is dropped after the link timeout; the next one is answered.
    s.sendall(proto.encode_frame(Command.IDENTIFY, 5)[:7])
    time.sleep(0.5)
    s.sendall(proto.encode_frame(Command.IDENTIFY, 6))
    got = _replies(s, 1)
    assert [(code, seq) for code, seq, _, _ in got] == [(Status.OK, 6)]
    assert got[0][2][:4] == proto.IDENTITY_MAGIC
    s.close()


@pytest.mark.parametrize("device", ["golden", "rtl"])
def test_sdram_words_written_through_the_link_read_back(board, device):
    """Random blocks anywhere in the 32 MB, the top's wrap included, through the protocol's
    SDRAM target: on the RTL, every command passes the chip model's rule checks."""
    driver = (Driver(GoldenTransport(GoldenDevice(CFG)), reply_timeout=0.01) if device == "golden"
              else _sim_driver(board))
    rng = np.random.default_rng(12)
    blocks = [(int(a), rng.integers(0, 1 << 16, int(n)).astype("<u2"))
              for a, n in zip(rng.integers(0, SDRAM_WORDS - 3000, 6), rng.integers(1, 2500, 6))]
    blocks.append((SDRAM_WORDS - 5, np.arange(10, dtype="<u2")))      # past the top: wraps
    for address, words in blocks:
        driver.write_sdram(address, words.tobytes())
    for address, words in blocks[:-1]:
        got = np.frombuffer(driver.read_sdram(address, len(words)), "<u2")
        np.testing.assert_array_equal(got, words, err_msg=f"block at word {address:#x}")
    top = np.frombuffer(driver.read_sdram(SDRAM_WORDS - 5, 5), "<u2")
    bottom = np.frombuffer(driver.read_sdram(0, 5), "<u2")
    np.testing.assert_array_equal(np.concatenate([top, bottom]), np.arange(10))
    with pytest.raises(DeviceError, match="BAD_ARGUMENT"):
        driver.request(Command.CLEAR, proto.args(Target.SDRAM, 0, 4))
    driver.transport.close()


def test_fault_injection_on_the_simulated_board_never_gives_a_wrong_answer(board):
    r = run_campaign(board.url, range(2), rate=0.003, requests_per_seed=60, cfg=CFG)
    print(r)
    assert r.faults > 20 and r.retries > 5
    assert r.wrong == 0
    assert r.correct >= 0.8 * r.requests / 2


@pytest.mark.skipif(not (SHARED / "imagenet-sample").exists(), reason="needs ../shared")
def test_authors_squeezenet_on_the_simulated_board_is_bit_exact(board):
    """One real photo through the authors' Deep Compression SqueezeNet v1.0 (8-bit) on the
    RTL with its maps in the SDRAM model: every logit equal to golden, every op's cycles equal
    to the model or inside its transfer bound."""
    from golden.evaluate import calibration_images
    from golden.preprocess import load_image
    model = load_model(SHARED / "models" / "squeezenet-v1.0-deep-compression"
                       / "compressed_SqueezeNet.net")
    calib, _ = calibration_images(SHARED / "imagenet-sample", model.network.input, 10)
    q = quantize(model, calib, 8)
    prog = compile_network(q, CFG)
    driver = _sim_driver(board)
    driver.load_model(prog)
    pixels = load_image(SHARED / "imagenet-sample" / "n01440764_tench.JPEG", model.network.input)
    driver.load_image(prog, pixels)
    # While the program runs, STATUS answers, memory commands are refused, RESET stops it.
    driver.request(Command.RUN)
    assert driver.status()[0] == RunState.RUNNING
    with pytest.raises(DeviceError, match="BUSY"):
        driver.read(Target.FEATURE, 0, 1, CFG.pc)
    driver.reset()
    assert driver.status()[0] == RunState.IDLE
    cycles = driver.run()
    np.testing.assert_array_equal(driver.read_logits(prog), Golden(q)(pixels))
    _check_cycles(driver, prog, cycles)
    driver.transport.close()


def test_authors_squeezenet_at_128_mac_units_on_the_simulated_board_is_bit_exact():
    """The authors' SqueezeNet v1.0 on the RTL of the 128-unit device (32 x 4, weight words of
    values, memory A doubled): every logit golden's, every op's busy cycles the model's."""
    from golden.evaluate import calibration_images
    from golden.preprocess import load_image
    from sim.board.build import BoardProcess
    model = load_model(SHARED / "models" / "squeezenet-v1.0-deep-compression"
                       / "compressed_SqueezeNet.net")
    calib, _ = calibration_images(SHARED / "imagenet-sample", model.network.input, 10)
    q = quantize(model, calib, 8)
    prog = compile_network(q, board_config(128))
    pixels = load_image(SHARED / "imagenet-sample" / "n01440764_tench.JPEG", model.network.input)
    with BoardProcess(prog.cfg, quiet=True) as b:
        driver = _sim_driver(b)
        _runs_bit_exact_with_the_cycle_model(driver, q, prog, [pixels])
        driver.transport.close()


def _random_network_on_the_board(board, net, seed):
    """``net`` with seeded random weights pruned to half (``_random_model``) on the RTL with its
    maps in the SDRAM model, one random photo: every logit equal to golden, every op's cycles
    as ``_check_cycles`` says. Returns the program."""
    q, rng = _random_model(net, seed)
    shape = q.network.input.channels, q.network.input.height, q.network.input.width
    prog = compile_network(q, CFG)
    driver = _sim_driver(board)
    _runs_bit_exact_with_the_cycle_model(
        driver, q, prog, [rng.integers(0, 256, shape, dtype=np.uint8)])
    driver.transport.close()
    return prog


def test_squeezenet_v1_1_with_sparse_random_weights_on_the_simulated_board_is_bit_exact(board):
    """SqueezeNet v1.1 at full size (224x224, 3x3 conv1 with 64 channels, pooling after conv1,
    fire3 and fire5), seeded random weights pruned to half, on the RTL with its maps in the
    SDRAM model: every logit equal to golden, every op's cycles as ``_check_cycles`` says."""
    _random_network_on_the_board(board, squeezenet_v1_1(), 11)


@pytest.mark.parametrize("make", [lambda: digits_net(bypass="simple"),
                                  lambda: digits_net(bypass="complex"),
                                  lambda: squeezenet_v1_0("simple"),
                                  lambda: squeezenet_v1_0("complex")],
                         ids=["digits-simple", "digits-complex", "squeezenet-v1.0-simple",
                              "squeezenet-v1.0-complex"])
def test_the_bypasses_on_the_simulated_board_are_bit_exact(board, make):
    """The bypass variants (the paper's section 6: an add around every Fire module whose input
    and output have as many channels; the complex one also a 1x1 convolution around the
    others), seeded random weights pruned to half, on the RTL with the maps in the SDRAM
    model: the ADD ops' sums and the residual passes bit-exact (every logit equal to golden),
    every op's cycles as ``_check_cycles`` says. SqueezeNet v1.0 at full size (the complex
    one in two program segments)."""
    prog = _random_network_on_the_board(board, make(), 5)
    assert sum(op.kind == OpKind.ADD for op in prog.ops) >= 2


SMALL_INPUT = InputSpec(3, 64, 64, "RGB", (0.0,), (255.0,))


@pytest.mark.parametrize("make", [
    lambda: squeezenext(0.5, "23", grouped=True, classes=10, input_spec=SMALL_INPUT),
    lambda: cifar10_squeezenet("e4")], ids=["squeezenext-0.5-G-64px", "cifar10-e4"])
def test_squeezenext_blocks_and_the_cifar10_layers_on_the_simulated_board_are_bit_exact(board,
                                                                                     make):
    """SqueezeNext's blocks (3x1 and 1x3 kernels, two-group layers as the G variant has them,
    stride-2 1x1 projections, the residual ADD) on a 64x64 input at half width, and the CIFAR-10
    study's e4 (a 2x2 first layer with padding 1, 2x2/2 pooling), seeded random weights
    pruned to half, on the RTL: every logit equal to golden, every op's cycles as
    ``_check_cycles`` says."""
    _random_network_on_the_board(board, make(), 9)


def test_the_shipped_cifar10_model_on_the_simulated_board_is_bit_exact(board):
    """models/cifar10-<variant>.sqz (trained, pruned, shared weights) on three of the shipped
    CIFAR-10 test photos: every logit equal to golden, every op's cycles as the cycle model."""
    from golden.cifar10 import demo_photos, shipped_model
    from golden.preprocess import load_image
    model = load_model(shipped_model(ROOT / "models"))
    photos = [load_image(p, model.network.input)
              for p, _ in demo_photos(ROOT / "models" / "photos")]
    q = quantize(model, photos, 8)
    prog = compile_network(q, CFG)
    driver = _sim_driver(board)
    _runs_bit_exact_with_the_cycle_model(driver, q, prog, photos[:3])
    driver.transport.close()


@pytest.mark.slow
def test_squeezenext_at_imagenet_size_on_the_simulated_board_is_bit_exact(board):
    """1.0-SqNxt-23 at 227x227, seeded random weights pruned to half: 1,071 ops, more than
    the program memory's 1,024, so two segments (the driver writes each before its RUN)."""
    prog = _random_network_on_the_board(board, squeezenext(1.0, "23"), 13)
    assert len(prog.segment_ranges()) == 2


# ---- the golden device against the RTL, reply for reply ---------------------------------------------

class _Recorder:
    """A transport to the golden device that keeps every request frame the driver sends."""

    def __init__(self, device):
        self.inner = GoldenTransport(device)
        self.frames = []

    def write(self, data):
        self.frames.append(bytes(data))
        self.inner.write(data)

    def read(self, timeout):
        return self.inner.read(timeout)

    def close(self):
        pass


def _odd_requests(rng, cfg, n, weight_words, ops=0):
    """Requests a driver would not send, all of which must be answered alike: writes and reads
    that wrap at the top of a memory, partial units, weight frames shorter than their entries,
    bad targets and flags, oversized reads, unknown commands, garbage between frames. Weight
    writes land in the program's first ``weight_words`` words half the time, so that the next
    run shows what they wrote. Counters are read (wrapping past the top) only when ``ops`` of
    them have been written by a run: a counter keeps its value across RESET and uploads."""
    frame = lambda code, payload=b"": proto.encode_frame(code, rng.randrange(256), payload)
    wr = lambda target, addr, data, flags=0, count=0: frame(
        Command.WRITE, proto.args(target, addr, count, flags) + data)
    lanes = cfg.lanes
    position = lambda: rng.randrange(rng.choice([weight_words, cfg.weight_depth * 2]) * lanes)
    kinds = [
        lambda: wr(Target.FEATURE, cfg.fm_depth - rng.randrange(1, 8),
                   rng.randbytes(cfg.pc * rng.randrange(1, 16) + rng.randrange(cfg.pc))),
        # packed feature words (an image's raw pixels), and flags past the lanes (refused)
        lambda: wr(Target.FEATURE, cfg.fm_depth - rng.randrange(1, 8),
                   rng.randbytes(rng.randrange(1, 30)), flags=rng.randrange(0, cfg.pc + 2)),
        lambda: wr(Target.CODEBOOK, rng.randrange(cfg.codebook_tables * cfg.codebook_entries * 2),
                   rng.randbytes(2 * rng.randrange(1, 9) + rng.randrange(2))),
        lambda: wr(Target.BIAS, rng.randrange(cfg.bias_depth * cfg.po * 2),
                   rng.randbytes(4 * rng.randrange(1, 9) + rng.randrange(4))),
        # valid sparse entries anywhere, wrapping past the last weight word
        lambda: wr(Target.WEIGHTS, position(), rng.randbytes(30), flags=8,
                   count=rng.randrange(0, 20)),
        # fewer bits than the entries it counts: refused, nothing written
        lambda: wr(Target.WEIGHTS, position(), rng.randbytes(rng.randrange(1, 12)),
                   flags=rng.choice([4, 6, 8]), count=rng.randrange(25, 60)),
        lambda: wr(Target.WEIGHTS, 0, rng.randbytes(4), flags=rng.choice([0, 9, 12]), count=1),
        lambda: wr(rng.randrange(5, 256), 0, rng.randbytes(8)),
        lambda: frame(Command.CLEAR, proto.args(Target.FEATURE, cfg.fm_depth - 3,
                                                rng.randrange(1, 9))),
        lambda: frame(Command.CLEAR, proto.args(Target.WEIGHTS, cfg.weight_depth - 2,
                                                rng.randrange(1, 5))),
        lambda: frame(Command.CLEAR, proto.args(rng.choice([Target.PROGRAM, Target.CODEBOOK]),
                                                0, 4)),
        lambda: frame(Command.READ, proto.args(Target.FEATURE, cfg.fm_depth - rng.randrange(1, 9),
                                               rng.randrange(0, 20))),
        lambda: frame(Command.READ, proto.args(Target.FEATURE, 0,
                                               proto.MAX_PAYLOAD // cfg.pc + 1)),
        lambda: frame(Command.READ, proto.args(Target.COUNTERS, cfg.program_depth + (
            first := rng.randrange(max(1, ops))), rng.randrange(0, max(1, ops - first) + 1)))
        if ops else frame(Command.READ, proto.args(Target.COUNTERS, 0, 0)),
        lambda: frame(Command.READ, proto.args(Target.PROGRAM, 0, 1)),
        # the SDRAM: a region the stream cleared, and its top (writes and reads wrap)
        lambda: wr(Target.SDRAM, rng.choice([SDRAM_REGION, SDRAM_WORDS - 8]) + rng.randrange(64),
                   rng.randbytes(2 * rng.randrange(1, 40) + rng.randrange(2))),
        # packed SDRAM writes (n bytes a feature word, the rest zero), partial units, and
        # flags the SDRAM refuses
        lambda: wr(Target.SDRAM, SDRAM_REGION + rng.randrange(64),
                   rng.randbytes(rng.randrange(1, 50)), flags=rng.randrange(1, cfg.pc + 2)),
        lambda: frame(Command.READ, proto.args(Target.SDRAM, rng.choice([SDRAM_REGION,
                                                                         SDRAM_WORDS - 8])
                                               + rng.randrange(64), rng.randrange(0, 60))),
        lambda: frame(Command.READ, proto.args(Target.SDRAM, 0, proto.MAX_PAYLOAD // 2 + 1)),
        lambda: frame(Command.CLEAR, proto.args(Target.SDRAM, SDRAM_REGION, 4)),
        lambda: wr(Target.COUNTERS, 0, rng.randbytes(8)),
        lambda: frame(Command.ECHO, rng.randbytes(rng.randrange(0, 300))),
        lambda: frame(Command.SELFTEST, rng.randbytes(rng.choice([0, 4, 11]))),
        lambda: frame(Command.WRITE, rng.randbytes(rng.randrange(proto.ARGS_BYTES))),
        lambda: frame(rng.choice([0x00, 0x08, 0x42, 0xFF])),
        lambda: frame(Command.IDENTIFY),
        lambda: frame(Command.STATUS),
        lambda: b"\x00\xa5" + rng.randbytes(5).replace(b"\xa5", b"") + frame(Command.STATUS),
    ]
    return [rng.choice(kinds)() for _ in range(n)]


SDRAM_WORDS = 1 << 24
SDRAM_REGION = 0x123400          # where the differential stream writes and reads the SDRAM


def _reset_state(cfg):
    """Requests that bring any device to one state: every memory the stream can read cleared
    or written (the RTL's memories have no initial contents)."""
    out = [proto.encode_frame(Command.RESET, 0)]
    for a in range(0, cfg.fm_depth, 0xFFFF):
        out.append(proto.encode_frame(Command.CLEAR, 0, proto.args(
            Target.FEATURE, a, min(0xFFFF, cfg.fm_depth - a))))
    out.append(proto.encode_frame(Command.CLEAR, 0, proto.args(Target.WEIGHTS, 0,
                                                                cfg.weight_depth)))
    for a in (SDRAM_REGION, SDRAM_WORDS - 16):
        out.append(proto.encode_frame(Command.WRITE, 0, proto.args(Target.SDRAM, a)
                                      + bytes(2 * 128)))
    for target, total, unit in ((Target.CODEBOOK, cfg.codebook_tables * cfg.codebook_entries, 2),
                                (Target.BIAS, cfg.bias_depth * cfg.po, 4)):
        per = (proto.MAX_PAYLOAD - proto.ARGS_BYTES) // unit
        for a in range(0, total, per):
            n = min(per, total - a)
            out.append(proto.encode_frame(Command.WRITE, 0, proto.args(target, a)
                                          + bytes(n * unit)))
    return out


def _replay_on_board(board, frames):
    """Each frame to the RTL, waiting for as many replies as it must give; after a RUN, wait
    (polling STATUS with sequence 0xFF, replies not kept) until the program is done."""
    s = _raw(board)
    parser, replies = proto.FrameParser(), []
    expected = [len(proto.FrameParser().feed(f)) for f in frames]

    def collect(n):
        got = []
        deadline = time.monotonic() + 30
        while len(got) < n:
            assert time.monotonic() < deadline, f"the RTL gave {len(got)} of {n} replies"
            got += parser.feed(s.recv(65536))
        return got

    for f, n in zip(frames, expected):
        s.sendall(f)
        got = collect(n)
        replies += got
        code = proto.FrameParser().feed(f)[0][0] if n else None
        poll = {Command.RUN: Command.STATUS, Command.SELFTEST: Command.SELFTEST_RESULT}
        while code in poll:
            s.sendall(proto.encode_frame(poll[code], 0xFF))
            (_, _, body, _), = collect(1)
            if body[0] != 1:             # RunState.RUNNING; the self-test's "running"
                break
            time.sleep(0.05)
    s.close()
    return replies


@pytest.fixture(scope="module")
def chip_board():
    from sim.board.build import BoardProcess
    with BoardProcess(CHIP, quiet=True) as b:
        yield b


def test_the_golden_device_answers_a_request_stream_byte_for_byte_as_the_rtl(chip_board,
                                                                               digits):
    """One seeded stream (a model upload, an image, runs, reads, and odd requests in between)
    into the golden device and into the RTL: every reply equal, the cycle counters included
    (the golden device's come from hw.timing, the RTL's are counted)."""
    q, _, images = digits
    prog = compile_network(q, CHIP)
    board = chip_board
    CFG = CHIP
    seed = 20261201
    rng = random.Random(seed)
    recorder = _Recorder(GoldenDevice(CFG))
    driver = Driver(recorder, reply_timeout=0.01)
    driver.load_model(prog)
    upload = recorder.frames[:]
    for x in images[:2]:
        recorder.frames.clear()
        driver.load_image(prog, x)
        driver.run()
        driver.read_logits(prog)
        driver.read_counters(prog)
        upload += recorder.frames
    # Odd requests between the upload and the first image, and after every run; then a
    # second run on whatever the odd writes left, and its results.
    stream = (_reset_state(CFG) + upload[:len(upload) // 2]
              + _odd_requests(rng, CFG, 60, prog.weight_words)
              + upload[len(upload) // 2:]
              + _odd_requests(rng, CFG, 60, prog.weight_words, len(prog.ops))
              + [proto.encode_frame(Command.RUN, 7), proto.encode_frame(Command.STATUS, 8)]
              + [proto.encode_frame(Command.READ, 9, proto.args(Target.COUNTERS, 0,
                                                                   len(prog.ops)))]
              # the waits for the DMA queue (none without transfers), END's included
              + [proto.encode_frame(Command.READ, 14, proto.args(
                  Target.COUNTERS, CFG.program_depth, len(prog.ops) + 1))]
              + [proto.encode_frame(Command.READ, 10, proto.args(Target.FEATURE,
                                                                    prog.result_base, 16))]
              # the SDRAM self-test on the stream's region, its result, what it left there
              + [proto.encode_frame(Command.SELFTEST, 11, struct.pack(
                  proto.SELFTEST_ARGS, SDRAM_REGION, 100, 9)),
                 proto.encode_frame(Command.SELFTEST_RESULT, 12),
                 proto.encode_frame(Command.READ, 13, proto.args(Target.SDRAM, SDRAM_REGION,
                                                                  100))])
    golden = GoldenDevice(CFG)
    want = proto.FrameParser().feed(b"".join(golden.receive(f) for f in stream))
    got = _replay_on_board(board, stream)
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert g == w, (f"reply {i} (seed {seed}) differs: RTL {g}, golden device {w}; "
                        f"request {proto.FrameParser().feed(b''.join(stream))[i][:2]}")
    statuses = [w for w in want if w[0] == Status.OK and len(w[2]) == 7]
    assert statuses, "the stream checks the run's STATUS"


# ---- bring-up self-tests ------------------------------------------------------------------------

def test_selftest_passes_on_the_golden_device_and_the_simulated_board(board):
    from host.selftest import run_selftest
    for driver in (Driver(GoldenTransport(GoldenDevice(CFG)), reply_timeout=0.01),
                   _sim_driver(board)):
        report = run_selftest(driver, base=0x40000, words=1 << 14, seed=3, frames=25)
        assert report["ok"], report
        assert report["identity"]["sdram_words"] == SDRAM_WORDS
        assert report["link"]["wrong_replies"] == 0 and report["link"]["payload_bytes"] > 10_000
        # 16 data lines, base and its 14 address lines, then every word.
        assert report["sdram"]["reads_checked"] == 16 + 15 + (1 << 14)
        driver.transport.close()


@pytest.mark.parametrize("fault, phase, check", [
    ({"stuck_bit": 5, "stuck_value": 1}, "DATA_BUS",
     lambda f: f["bits"] == [5] and f["address"] == 0x40000 and f["expected"] == "0x0001"),
    ({"stuck_bit": 11, "stuck_value": 0}, "DATA_BUS",
     lambda f: f["bits"] == [11] and f["got"] == "0x0000"),
    ({"short_lo": 3, "short_hi": 9}, "ADDRESS_BUS",
     lambda f: f["address"] == 0x40000 and f["address_line"] == 9),
])
def test_selftest_names_an_injected_sdram_fault(fault, phase, check):
    """The chip model with a stuck data line or two shorted address lines: the device's own
    test fails, and the report names the phase, the address and the line."""
    from host.selftest import sdram_test
    from host.transport import SerialTransport
    from sim.board.build import BoardProcess
    with BoardProcess(CFG, quiet=True, sdram_faults=fault) as b:
        driver = Driver(SerialTransport(b.url), reply_timeout=1.0)
        report = sdram_test(driver, base=0x40000, words=1 << 12, seed=5)
        driver.transport.close()
    print(report)
    assert not report["ok"] and report["errors"] > 0
    failure = report["first_failure"]
    assert failure["phase"] == phase, failure
    assert check(failure), failure
