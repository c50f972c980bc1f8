"""The bad-inputs table in docs/reliability.md: every case of tools/bad_input_cases.py, run.

A case does one thing a user might do wrong and says what must happen: an exception of one type
whose message matches a pattern, raised before any expensive work (the model passes that ran
before it are counted), or "handled", with a check of the result and a sentence for the table.
The table quotes each message as the code raises it now, with temporary paths as `<tmp>`, so it
is the same on every machine and cannot drift from the code:

    python -m tools.bad_inputs          # rewrite the block `bad_inputs` (docs/reliability.md)
"""

from __future__ import annotations

import functools
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from explainers.core.model_kind import evaluation_points

ROOT = Path(__file__).resolve().parents[1]
BLOCK = "bad_inputs"
MAX_MESSAGE = 300                       # longer messages keep their start and their end (the fix)


class Ctx:
    """One case's scratch folder and the models whose passes it counts."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.passes: int | None = None          # None: no model watched
        self.handles: list = []

    def count(self, model: nn.Module) -> nn.Module:
        """Watch `model`: count its completed passes where `Cost` counts its rows."""
        self.passes = self.passes or 0

        def seen(*_) -> None:
            self.passes += 1

        self.handles += [m.register_forward_hook(seen) for m in evaluation_points(model)]
        return model

    def close(self) -> None:
        for h in self.handles:
            h.remove()


@dataclass(frozen=True)
class Case:
    name: str                                   # the bad input, as the table names it
    action: Callable[[Ctx], object]             # does what the user did
    error: type[BaseException] | None = None    # the exception it must raise ...
    match: str = ""                             # ... whose message matches this pattern
    max_passes: int = 0                         # model passes allowed before the error
    handled: str = ""                           # or: what the user gets instead of an error
    check: Callable[[object], None] | None = None   # asserts the handled result


@dataclass
class Outcome:
    error: Exception | None
    message: str                                # the error's message as the table shows it
    result: object
    passes: int | None


@functools.cache
def outcome(case: Case) -> Outcome:
    """Run `case` once (the per-case test and the table share the result)."""
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Ctx(Path(tmp))
        try:
            result, error = case.action(ctx), None
        except Exception as err:                # pytest's skip is no Exception: it propagates
            result, error = None, err
        finally:
            ctx.close()
        message = scrub(str(error), [tmp, str(Path(tmp).resolve())]) if error else ""
    return Outcome(error, message, result, ctx.passes)


def scrub(message: str, tmp: list[str]) -> str:
    """One line, temporary paths as <tmp>, the repository as <repo>, no object addresses."""
    for t in sorted(set(tmp), key=len, reverse=True):
        message = message.replace(t, "<tmp>")
    message = message.replace(str(ROOT), "<repo>")
    message = re.sub(r" at 0x[0-9a-f]+", "", message)
    return re.sub(r"\s+", " ", message).strip()


def shorten(message: str, limit: int = MAX_MESSAGE) -> str:
    """Keep the start (what was wrong) and the end (the fix) of a long message."""
    if len(message) <= limit:
        return message
    tail = limit // 3
    return message[:limit - tail - 3].rstrip() + " … " + message[-tail:].lstrip()


def row(case: Case) -> str:
    """One table row: the bad input, what you get, the model passes before it."""
    if case.error is None:
        return f"| {case.name} | handled: {case.handled} | — |"
    out = outcome(case)
    name = type(out.error).__name__ if out.error else "no error"
    text = shorten(out.message).replace("|", "\\|")
    passes = "—" if out.passes is None else str(out.passes)
    return f"| {case.name} | {name}: `` {text} `` | {passes} |"


def render(cases: list[Case]) -> str:
    """The block: one row per case, then the counts."""
    errors = sum(case.error is not None for case in cases)
    return "\n".join([
        "| bad input | what you get | model passes before it |", "|---|---|---|",
        *(row(case) for case in cases), "",
        f"{len(cases)} bad inputs tried: {errors} raise an error that says what to do, "
        f"{len(cases) - errors} are handled."])


def readme_block(root: Path = ROOT) -> str | None:
    """The text between the `bad_inputs` markers, in the README or the docs page holding them."""
    from tools.readme import block_text

    return block_text(BLOCK, root)


def main() -> None:
    """Run the cases and rewrite the block from what they raise now."""
    import torch

    from tools.bad_input_cases import CASES
    from tools.readme import block_file, replace_block

    torch.set_num_threads(1)
    if not replace_block(BLOCK, render(CASES)):
        raise SystemExit(f"neither README.md nor a docs/ page has <!-- {BLOCK}:begin --> ... "
                         ":end --> markers")
    print(f"{block_file(BLOCK).relative_to(ROOT)}: {len(CASES)} bad inputs")


if __name__ == "__main__":
    main()
