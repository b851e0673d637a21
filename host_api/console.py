"""The console side of headless hosts: one progress bar, and lines printed above it."""
from __future__ import annotations


class ConsoleProgress:
    """A tqdm bar (rate and time left) made at the first report; ``write`` prints above it."""

    def __init__(self, show: bool = True, notebook: bool = False) -> None:
        self.show = show
        self._notebook = notebook            # tqdm.auto: a widget in Jupyter, text elsewhere
        self._bar = None

    def _tqdm(self):
        if self._notebook:
            from tqdm.auto import tqdm
        else:
            from tqdm import tqdm
        return tqdm

    def report(self, done: int, total: int) -> None:
        if not self.show:
            return
        if self._bar is None:
            self._bar = self._tqdm()(total=total, unit="plane", desc="segmenting")
        self._bar.total = total
        self._bar.update(done - self._bar.n)

    def write(self, message: str) -> None:
        if self._bar is not None:
            self._tqdm().write(message)
        else:
            print(message, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
