"""Keep generated tables current: the text between `<!-- TAG:begin -->` and `:end -->`, in the
README or in the docs page that holds the tag's markers."""

from __future__ import annotations

import os
import re
from pathlib import Path

from tools.files import locked, write_atomic

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def pages(root: Path = ROOT) -> list[Path]:
    """The files generated blocks may live in: the README and every page of docs/."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def markers(tag: str) -> re.Pattern:
    """The tag's block: its begin marker, the text between, its end marker (three groups)."""
    return re.compile(rf"(<!-- {re.escape(tag)}:begin -->\n)(.*?)(<!-- {re.escape(tag)}:end -->)",
                      re.S)


def block_file(tag: str, root: Path = ROOT) -> Path | None:
    """The page holding `tag`'s markers (None when no page does)."""
    return next((p for p in pages(root) if p.exists() and markers(tag).search(p.read_text())),
                None)


def block_text(tag: str, root: Path = ROOT) -> str | None:
    """The text between `tag`'s markers, wherever they are (None when no page has them)."""
    page = block_file(tag, root)
    return None if page is None else markers(tag).search(page.read_text()).group(2)


def replace_block(tag: str, text: str, readme: Path | None = None) -> bool:
    """Put `text` between `tag`'s markers, in `readme` when given, else in the README or the docs
    page that holds them; False when the markers are missing."""
    page = readme if readme is not None else block_file(tag)
    if page is None or not page.exists():
        return False
    # concurrent runs each replace their own blocks: read, edit and write under one lock
    checkout = next((d for d in page.parents if (d / "README.md").exists()), page.parent)
    lock = Path(os.environ.get("LEARNEDSHAP_CACHE", checkout / ".cache")) / "readme.lock"
    with locked(lock):
        old = page.read_text()
        new, count = markers(tag).subn(
            lambda m: m.group(1) + text.rstrip() + "\n" + m.group(3), old)
        if count and new != old:
            write_atomic(page, new)
    return bool(count)
