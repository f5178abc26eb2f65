"""Split a folder of labelled photos into two disjoint halves of symbolic links (sorted order,
alternating), e.g. photos to fine-tune on and photos to evaluate on. Nothing is copied.

    python tools/split_photos.py SRC OUT    ->  OUT/tune/ (even positions), OUT/held/ (odd)
"""

import sys
from pathlib import Path


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    src, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2])
    photos = sorted(p for p in src.iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
    if not photos:
        print(f"{src}: no photos", file=sys.stderr)
        return 2
    for half in ("tune", "held"):
        (out / half).mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(photos):
        link = out / ("tune" if i % 2 == 0 else "held") / p.name
        if not link.is_symlink():
            link.symlink_to(p)
    print(f"{out}/tune: {len(photos[0::2])} photos, {out}/held: {len(photos[1::2])} photos")
    return 0


if __name__ == "__main__":
    sys.exit(main())
