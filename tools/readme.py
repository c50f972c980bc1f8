"""Keep generated tables in the README current: text between `<!-- TAG:begin -->` and `:end -->`."""

from __future__ import annotations

import os
import re
from pathlib import Path

from tools.files import locked, write_atomic

README = Path(__file__).resolve().parents[1] / "README.md"


def replace_block(tag: str, text: str, readme: Path = README) -> bool:
    """Put `text` between the README's `tag` markers; False when the markers are missing."""
    if not readme.exists():
        return False
    # concurrent runs each replace their own blocks: read, edit and write under one lock
    lock = Path(os.environ.get("LEARNEDSHAP_CACHE", readme.parent / ".cache")) / "readme.lock"
    with locked(lock):
        old = readme.read_text()
        pattern = rf"(<!-- {re.escape(tag)}:begin -->\n).*?(<!-- {re.escape(tag)}:end -->)"
        new, count = re.subn(pattern, lambda m: m.group(1) + text.rstrip() + "\n" + m.group(2),
                             old, flags=re.S)
        if count and new != old:
            write_atomic(readme, new)
    return bool(count)
