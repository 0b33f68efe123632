"""Graceful stops: SIGINT and SIGTERM ask the training loop to stop at the next step boundary."""
import signal
import sys
import threading


class Interrupted(Exception):
    """Raised once a stop request has been honoured and last.pth written."""

    def __init__(self, signum: int, checkpoint: str, where: str):
        super().__init__(f"stopped by {signal.Signals(signum).name} {where}; saved {checkpoint}")
        self.signum, self.checkpoint = signum, checkpoint

    @property
    def exit_code(self) -> int:
        return 128 + self.signum          # 130 for SIGINT, 143 for SIGTERM, as a shell reports


class StopRequest:
    """Context manager that turns SIGINT/SIGTERM into a flag the loop polls.

    The first signal sets `signum`; a second one aborts at once with KeyboardInterrupt
    (the last complete checkpoint stays intact, since checkpoints are written atomically).
    """
    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum = None
        self._previous = {}

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        print(f"\n{signal.Signals(signum).name} received: finishing the current step, then saving "
              f"last.pth (send it again to abort without saving)", file=sys.stderr, flush=True)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()
        return False
