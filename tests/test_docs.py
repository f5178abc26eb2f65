"""The docs name constants rather than restate them; where a table states what the code owns
(codes, ids, byte counts), it is checked here against the code."""

from __future__ import annotations

import re

from hw import protocol as proto

from conftest import ROOT

PROTOCOL = (ROOT / "docs" / "PROTOCOL.md").read_text()


def _table_rows(text: str, header: str) -> list[list[str]]:
    """The rows of the Markdown table whose header row starts with ``| header |``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header} |"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_protocol_tables_match_the_enums():
    for header, enum in (("command", proto.Command), ("status", proto.Status),
                         ("target", proto.Target)):
        rows = {r[0]: int(r[1], 0) for r in _table_rows(PROTOCOL, header)}
        assert rows == {m.name: int(m) for m in enum}, header


def test_protocol_frame_table_matches_the_framing():
    sizes = {r[1]: r[0] for r in _table_rows(PROTOCOL, "bytes")}
    assert int(sizes["sync"]) == len(proto.SYNC)
    assert sizes["sync"] and f"`{proto.SYNC[0]:02X} {proto.SYNC[1]:02X}`" in PROTOCOL
    assert int(sizes["code"]) + int(sizes["seq"]) + int(sizes["length"]) + len(proto.SYNC) \
        == proto.HEADER_BYTES
    assert int(sizes["CRC"]) == proto.CRC_BYTES
    header = re.search(r"start their payload with an (\d+)-byte header", PROTOCOL)
    assert int(header.group(1)) == proto.ARGS_BYTES


def test_docs_point_at_modules_that_exist():
    """Every `path/to/file.py` a doc names is in the tree."""
    missing = []
    for doc in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for path in set(re.findall(r"`((?:golden|hw|host|sim|tools|tests)/[\w/]+\.(?:py|cpp))`",
                                   doc.read_text())):
            if not (ROOT / path).exists():
                missing.append(f"{doc.name}: {path}")
    assert not missing, missing
