"""Errors that user-facing entry points turn into one line per problem and exit code 2."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One problem: where it is (dotted path, e.g. ``model.nodes.e1.channels``) and what."""

    loc: str
    msg: str

    def __str__(self) -> str:
        return f"{self.loc}: {self.msg}" if self.loc else self.msg


class UserError(Exception):
    """Bad input from the user. Carries every problem found, each with its location.

    Args:
        problems: the problems, or a single message string.
        source: the file the problems are in, prefixed to each line when printed.
    """

    def __init__(self, problems: list[Problem] | str, source: str | None = None) -> None:
        if isinstance(problems, str):
            problems = [Problem("", problems)]
        self.problems = list(problems)
        self.source = source
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        """One line per problem, each exactly one line even if a part held a line break."""
        pre = f"{self.source}: " if self.source else ""
        return [_one_line(f"{pre}{p}") for p in self.problems]


def _one_line(text: str) -> str:
    if len(text.splitlines()) <= 1 and "\r" not in text and "\n" not in text:
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class SpecError(UserError):
    """A spec failed to load or validate; ``problems`` lists every problem found."""
