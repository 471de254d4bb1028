"""One row of the reliability table (`CheckResult`) and the table itself (`print_table`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field


@dataclass
class CheckResult:
    """One row of the reliability table."""

    test: str
    fault: str
    problems: list[str] = field(default_factory=list)
    figures: str = ""
    #: Why the check could not be decided (e.g. advisory data unreachable): never a pass.
    unverified: str | None = None

    @property
    def passed(self) -> bool:
        return not self.problems and self.unverified is None

    @property
    def verdict(self) -> str:
        if self.problems:
            return "FAIL"
        return "UNVERIFIED" if self.unverified is not None else "PASS"

    def require(self, condition: bool, problem: str) -> None:
        """Record `problem` unless `condition` holds."""
        if not condition:
            self.problems.append(problem)


def print_table(results: list[CheckResult]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"Reliability under faults and hostile input — {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC"
    )
    table.add_column("test")
    table.add_column("fault applied")
    table.add_column("result")
    table.add_column("figures")
    colours = {"PASS": "green", "FAIL": "red", "UNVERIFIED": "yellow"}
    for result in results:
        verdict = f"[{colours[result.verdict]}]{result.verdict}[/{colours[result.verdict]}]"
        notes = list(result.problems) + ([result.unverified] if result.unverified else [])
        figures = result.figures + ("\n" + "; ".join(notes) if notes else "")
        table.add_row(result.test, result.fault, verdict, figures)
    Console(width=200).print(table)
