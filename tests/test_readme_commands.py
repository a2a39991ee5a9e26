"""Every ``sennflow`` command the README shows composes and validates its config as written, so a
renamed key or option cannot leave the documentation behind (``--show-config``: the config is
checked as a run checks it, nothing is trained)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from sennflow.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"
# Commands whose arguments the README leaves to the reader (alternatives, placeholders), or
# that print help.
_NOT_CHECKED = ("<", "|", "...", "[overrides]", "--help")
_NO_CONFIG = ("stack", "explain", "predict", "runs")
_INLINE = re.compile(r"`(sennflow [^`]+)`")


def readme_commands() -> list[str]:
    """The ``sennflow ...`` commands of the README: lines of its fenced and indented code
    blocks (continuations joined, comments dropped) and inline code spans."""
    rows, fenced, block = [], False, []
    for line in [*README.read_text().splitlines(), ""]:
        if not line.startswith("```") and (fenced or line.startswith("    ")):
            block.append(line)
            continue
        rows += "\n".join(block).replace("\\\n", " ").splitlines() + _INLINE.findall(line)
        fenced, block = fenced != line.startswith("```"), []
    commands = {_command(row) for row in rows}
    return sorted(c for c in commands if c and not any(mark in c for mark in _NOT_CHECKED))


def _command(row: str) -> str | None:
    words = shlex.split(row, comments=True) if row.strip().startswith("sennflow ") else []
    if len(words) < 2 or words[1] in _NO_CONFIG:
        return None
    return shlex.join(words)


def test_the_readme_shows_the_commands_of_every_flow():
    shown = {shlex.split(command)[1] for command in readme_commands()}
    assert {"run", "sweep", "federated", "continual", "prune", "pretrain", "pfn-train"} <= shown


@pytest.mark.parametrize("command", readme_commands())
def test_a_readme_command_composes_and_validates(command, capsys):
    _, name, *args = shlex.split(command)
    args = [arg for arg in args if arg != "--resume"]  # resuming needs a run; its config not
    assert main([name, "--show-config", *args]) == 0, capsys.readouterr().err
