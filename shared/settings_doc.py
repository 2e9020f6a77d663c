"""Render the settings reference (docs/reference/settings.md) from `Settings`' fields.

`python -m shared.settings_doc` rewrites the file; `--check` only says whether it is current.
"""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path

from shared.settings import Settings, var_of

REFERENCE = Path("docs/reference/settings.md")

HEADER = """\
# Settings

<!-- Generated from shared/settings.py by `python -m shared.settings_doc`: do not edit. -->

Every process (`web`, `worker`, `sweeper`, the `stripe-ingest` command) reads its settings from
the environment; a `.env` file in the working directory supplies defaults (the environment
wins). A blank value counts as unset. A malformed value stops the process at start (exit 2)
with a one-line message naming the variable.

| variable | default | meaning |
| --- | --- | --- |
"""


def shown_default(value: object) -> str:
    if value is None:
        return "unset"
    if value == ():
        return "none"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render() -> str:
    rows = []
    for f in fields(Settings):
        spec = var_of(f)
        default = spec.shown if spec.shown is not None else shown_default(f.default)
        rows.append(f"| `{spec.env}` | {_cell(default)} | {_cell(spec.doc)} |\n")
    return HEADER + "".join(rows)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    check = "--check" in args
    paths = [a for a in args if a != "--check"]
    path = Path(paths[0]) if paths else REFERENCE
    wanted = render()
    if check:
        current = path.read_text(encoding="utf-8") if path.is_file() else ""
        if current != wanted:
            sys.stderr.write(f"{path} is out of date: run python -m shared.settings_doc\n")
            return 1
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
