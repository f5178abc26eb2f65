"""Bring-up self-tests, the first thing to run on a new board: ``sqz selftest``.

- **identity**: IDENTIFY, parsed (the configuration the bitstream was built with);
- **link**: a soak of ECHO frames of seeded random sizes and bytes, each reply compared with
  what was sent; wrong replies, retries and the bytes moved are counted;
- **sdram**: the device's own SDRAM test (hw/memtest.py: walking ones on the data lines, a
  distinct word on every address line, seeded random data over the range), polled until done;
  the first failure is named: its phase, word address, the word expected and read, and the
  bits that differ; in the address phase also the address line whose word arrived instead.

``run_selftest`` returns {"ok", "identity", "link", "sdram"}; every part's "ok" must hold.
"""

from __future__ import annotations

import random
import struct
import time
from dataclasses import asdict

from hw import protocol as proto
from hw.protocol import Command, MemTestPhase

__all__ = ["run_selftest", "link_soak", "sdram_test"]


def link_soak(driver, frames: int = 200, seed: int = 0) -> dict:
    rng = random.Random(seed)
    retries, sent, wrong = driver.stats.retries, 0, 0
    for _ in range(frames):
        payload = rng.randbytes(rng.randrange(0, proto.MAX_PAYLOAD + 1))
        if driver.request(Command.ECHO, payload) != payload:
            wrong += 1
        sent += len(payload)
    return {"ok": wrong == 0, "frames": frames, "payload_bytes": sent, "wrong_replies": wrong,
            "retries": driver.stats.retries - retries}


def sdram_test(driver, base: int = 0, words: int = 1 << 24, seed: int = 1, poll: float = 0.05,
               timeout: float = 600.0) -> dict:
    driver.request(Command.SELFTEST, struct.pack(proto.SELFTEST_ARGS, base, words, seed))
    deadline = time.monotonic() + timeout
    while True:
        fields = struct.unpack(proto.SELFTEST_FORMAT, driver.request(Command.SELFTEST_RESULT))
        state, phase, failed, fail_phase, address, expected, got, errors, checked = fields
        if state == 2:
            break
        if state != 1:
            raise proto.ProtocolError(f"SELFTEST_RESULT reports state {state} after the test was "
                                      "started (1 running or 2 done expected)")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the SDRAM test still runs after {timeout:.0f} s (phase "
                               f"{MemTestPhase(phase).name})")
        time.sleep(poll)
    report = {"ok": not failed, "base": base, "words": words, "seed": seed,
              "reads_checked": checked, "errors": errors, "first_failure": None}
    if failed:
        diff = expected ^ got
        failure = {"phase": MemTestPhase(fail_phase).name, "address": address,
                   "expected": f"{expected:#06x}", "got": f"{got:#06x}",
                   "bits": [b for b in range(16) if diff >> b & 1]}
        if fail_phase == MemTestPhase.ADDRESS_BUS and got >> 8 == 0xA5:
            # The word read is the one written at base + 2**line: that line aliases this one.
            line = (got & 0xFF) - 1
            failure["written_at"] = base if line < 0 else base + (1 << line)
            failure["address_line"] = None if line < 0 else line
        report["first_failure"] = failure
    return report


def run_selftest(driver, base: int = 0, words: int = 1 << 24, seed: int = 1,
                 frames: int = 200) -> dict:
    identity = asdict(driver.identify())
    link = link_soak(driver, frames, seed)
    sdram = sdram_test(driver, base, words, seed)
    return {"ok": link["ok"] and sdram["ok"], "identity": identity, "link": link,
            "sdram": sdram}
