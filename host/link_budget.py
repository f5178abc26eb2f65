"""What a board's serial link costs: bytes and seconds of a model upload, of one image, of the
result, and the compute time, at a baud.

    python -m host.link_budget [--model M] [--bits 8] [--baud 3000000] [--markdown OUT]

The bytes are exact: the driver uploads the compiled program to the golden device, which
speaks the board's protocol, and counts every byte both ways (frames, headers, CRCs, replies).
The seconds are those bytes at the baud with 8N1 framing (10 bits a byte) and nothing else: on
a real FT231X each reply also waits for the USB latency timer (1 ms when set as
docs/BOARD.md says), so a request costs that much more. Compute comes from the cycle model
(hw.timing, checked against the RTL) at the configuration's clock. STATUS polling is counted
at the driver's interval over the compute time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["link_budget"]

ROOT = Path(__file__).resolve().parents[1]


def link_budget(q, cfg, baud: int = 3_000_000, poll_s: float = 0.02) -> dict:
    import numpy as np

    from host.compiler import compile_network
    from host.driver import Driver
    from host.golden_device import GoldenDevice
    from host.transport import GoldenTransport
    from hw import protocol as proto
    from hw.protocol import Command
    prog = compile_network(q, cfg)
    driver = Driver(GoldenTransport(GoldenDevice(cfg)), reply_timeout=0.01)
    stats = driver.stats

    def moved(action):
        sent, got = stats.bytes_sent, stats.bytes_received
        action()
        return stats.bytes_sent - sent, stats.bytes_received - got

    byte_s = baud / 10
    upload = moved(lambda: driver.load_model(prog))
    pixels = np.zeros(prog.input_shape, np.uint8)
    image = moved(lambda: driver.load_image(prog, pixels))
    result = moved(lambda: (driver.read_logits(prog), driver.read_counters(prog)))
    cycles = prog.expected_cycles()["total"]
    compute_s = cycles / (cfg.clock_mhz * 1e6)
    poll = len(proto.encode_frame(Command.STATUS, 0)) + len(
        proto.encode_frame(0, 0, bytes(7)))
    polls = compute_s / poll_s
    per_image_bytes = sum(image) + sum(result) + poll * polls + 2 * len(
        proto.encode_frame(Command.RUN, 0))
    return {"baud": baud, "bytes_per_s": byte_s, "clock_mhz": cfg.clock_mhz,
            "upload_bytes": sum(upload), "upload_s": sum(upload) / byte_s,
            "image_bytes": sum(image), "image_s": sum(image) / byte_s,
            "result_bytes": sum(result), "result_s": sum(result) / byte_s,
            "cycles": cycles, "compute_s": compute_s,
            "status_poll_share_of_link": poll / poll_s / byte_s,
            "per_image_s": per_image_bytes / byte_s + compute_s,
            "payload_bytes_per_s": byte_s * (proto.MAX_PAYLOAD - proto.ARGS_BYTES)
            / (proto.MAX_PAYLOAD + proto.HEADER_BYTES + proto.CRC_BYTES)}


def markdown(name: str, b: dict) -> str:
    return "\n".join([
        f"# Link budget: {name} at {b['baud']:,} baud, {b['clock_mhz']:g} MHz", "",
        "`python -m host.link_budget` (exact bytes through the golden device; seconds at 8N1, "
        "USB latency not included):", "",
        "| | bytes | seconds |", "|---|---:|---:|",
        f"| model upload (once) | {b['upload_bytes']:,} | {b['upload_s']:.2f} |",
        f"| one image | {b['image_bytes']:,} | {b['image_s']:.3f} |",
        f"| logits and counters | {b['result_bytes']:,} | {b['result_s']:.3f} |",
        f"| compute ({b['cycles']:,} cycles) | | {b['compute_s']:.3f} |",
        f"| **one image, end to end** | | **{b['per_image_s']:.3f}** |", "",
        f"Payload through full WRITE frames: {b['payload_bytes_per_s']:,.0f} bytes/s; STATUS "
        f"polling every 20 ms takes {b['status_poll_share_of_link']:.2%} of the link.", ""])


def main(argv=None) -> int:
    from golden import numerics as nx
    from golden.formats import load_model
    from golden.quantize import quantize
    from hw.config import board_config
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "models" / "digits-squeezenet.npz"))
    ap.add_argument("--bits", type=int, default=8)
    ap.add_argument("--baud", type=int, default=3_000_000)
    ap.add_argument("--markdown", help="append the table to this file")
    args = ap.parse_args(argv)
    model = load_model(args.model)
    shape = (model.network.input.channels, model.network.input.height, model.network.input.width)
    import numpy as np
    rng = np.random.default_rng(0)
    calib = [rng.integers(0, 256, shape).astype(np.uint8) for _ in range(2)]
    q = quantize(model, calib, args.bits, nx.DEFAULT_VALUE_BITS)
    text = markdown(Path(args.model).name, link_budget(q, board_config(), args.baud))
    print(text)
    if args.markdown:
        with open(args.markdown, "a") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
