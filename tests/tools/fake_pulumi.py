"""A stand-in for the pulumi CLI (and, as `fake_pulumi.py preflight`, for preflight): records each call.

Installed on PATH as `pulumi` by the deploy tests. $FAKE_PULUMI_DIR holds `outputs.json` (the stack's
outputs, canned), gets `calls.jsonl` (one argv per line), may hold `fail` (a verb, e.g. `up`, to exit 255).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    state = Path(os.environ["FAKE_PULUMI_DIR"])
    with (state / "calls.jsonl").open("a", encoding="utf-8") as calls:
        calls.write(json.dumps(argv) + "\n")
    fail = state / "fail"
    verb = argv[0] if argv else ""
    if fail.exists() and fail.read_text().strip() == verb:
        print(f"error: the fake pulumi was told to fail `{verb}`", file=sys.stderr)
        return 255
    outputs = json.loads((state / "outputs.json").read_text())
    if argv[:2] == ["stack", "output"]:
        names = [word for word in argv[2:] if not word.startswith("-") and word not in _option_values(argv)]
        print(json.dumps(outputs[names[0]] if names else outputs))
        return 0
    if verb == "preflight":
        print("ok      billing: the fake preflight passes every check")
        return 0
    if verb in {"login", "stack", "config"}:  # the README's setup of a stack: recorded, nothing to answer
        return 0
    if verb in {"up", "preview"}:
        print(f"Updating ({argv[argv.index('--stack') + 1]}) ... {verb} done")
        return 0
    print(f"error: the fake pulumi does not know `{' '.join(argv)}`", file=sys.stderr)
    return 2


def _option_values(argv: list[str]) -> set[str]:
    """The words that are values of options (`--stack dev`), not positional names."""
    return {argv[i + 1] for i, word in enumerate(argv[:-1]) if word == "--stack"}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
