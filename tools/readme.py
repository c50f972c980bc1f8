"""Keep generated tables in the README current: text between `<!-- TAG:begin -->` and `:end -->`."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def replace_block(tag: str, text: str, readme: Path = README) -> bool:
    """Put `text` between the README's `tag` markers; False when the markers are missing."""
    if not readme.exists():
        return False
    old = readme.read_text()
    pattern = rf"(<!-- {re.escape(tag)}:begin -->\n).*?(<!-- {re.escape(tag)}:end -->)"
    new, count = re.subn(pattern, lambda m: m.group(1) + text.rstrip() + "\n" + m.group(2), old,
                         flags=re.S)
    if count and new != old:
        readme.write_text(new)
    return bool(count)
