"""The demo's terminal view: steps, resources and events.

A live view (rich) on a terminal, plain time-stamped lines otherwise (CI, a pipe).
Used by ``controller.demo.story``; rich comes with the ``demo`` extra.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text


@dataclass
class StepState:
    title: str
    state: str = "running"      # running | ok | failed
    detail: str = ""
    started: float = field(default_factory=time.monotonic)
    elapsed: float = 0.0


class View:
    """Steps, resources and events; a rich live view on a terminal, plain lines otherwise."""

    ICONS = {"running": "...", "ok": "ok", "failed": "FAILED"}

    def __init__(self, *, live: bool, out: Any = None) -> None:
        self.out = out or sys.stdout
        self.started = time.monotonic()
        self.steps: list[StepState] = []
        self.rows: list[tuple[str, ...]] = []
        self.events: list[str] = []
        self._live = None
        self._last_rows: dict[str, tuple[str, ...]] = {}
        if live:
            self._console = Console(file=self.out)
            self._live = Live(self._render(), console=self._console, refresh_per_second=8, transient=False)
            self._live.start()

    def _stamp(self) -> str:
        return f"[{time.monotonic() - self.started:6.1f}s]"

    def _render(self) -> Any:
        steps = Table.grid(padding=(0, 1))
        for s in self.steps:
            style = {"ok": "green", "failed": "bold red", "running": "yellow"}[s.state]
            took = f"{s.elapsed:5.1f}s" if s.state != "running" else f"{time.monotonic() - s.started:5.1f}s"
            steps.add_row(Text(self.ICONS[s.state], style=style), Text(s.title, style="bold"), Text(took, style="dim"),
                          Text(s.detail, style="dim"))
        parts: list[Any] = [Text("regaccess demo", style="bold cyan"), steps]
        if self.rows:
            table = Table(title="resources", expand=False)
            for column in ("resource", "Ready", "Synced", "Drifted", "reason / message"):
                table.add_column(column)
            for row in self.rows:
                table.add_row(*row)
            parts.append(table)
        if self.events:
            parts.append(Text("events:\n" + "\n".join(self.events[-6:]), style="dim"))
        return Group(*parts)

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render())

    def step(self, title: str) -> StepState:
        state = StepState(title)
        self.steps.append(state)
        if self._live is None:
            print(f"{self._stamp()} ... {title}", file=self.out, flush=True)
        self._refresh()
        return state

    def finish(self, state: StepState, ok: bool, detail: str = "") -> None:
        state.state = "ok" if ok else "failed"
        state.detail = detail
        state.elapsed = time.monotonic() - state.started
        if self._live is None:
            word = "ok" if ok else "FAILED"
            print(f"{self._stamp()} {word:>3} {state.title}" + (f": {detail}" if detail else ""), file=self.out, flush=True)
        self._refresh()

    def resources(self, rows: list[tuple[str, ...]]) -> None:
        self.rows = rows
        if self._live is None:
            for row in rows:
                if self._last_rows.get(row[0]) != row:
                    print(f"{self._stamp()}     {row[0]}: Ready={row[1]} Synced={row[2]} Drifted={row[3]} {row[4]}",
                          file=self.out, flush=True)
                    self._last_rows[row[0]] = row
        self._refresh()

    def event(self, text: str) -> None:
        self.events.append(text)
        if self._live is None:
            print(f"{self._stamp()}     event {text}", file=self.out, flush=True)
        self._refresh()

    def note(self, text: str) -> None:
        if self._live is not None:
            self._live.console.print(text)
        else:
            print(text, file=self.out, flush=True)

    def close(self) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.stop()
