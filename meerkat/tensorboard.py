"""`meerkat tensorboard OUTPUT`: serve OUTPUT/logs with TensorBoard until Ctrl-C (or SIGTERM).

TensorBoard's Python API runs the server in a thread of this process, so the one line printed is
meerkat's: the URL to open. Its own chatter (the data-server advisory, the `Serving on localhost`
hint, per-request logs) stays out of the way unless --debug.
"""

import logging
import signal
import sys
import time
from pathlib import Path

from meerkat.core.errors import MeerkatError
from meerkat.core.serving import WILDCARDS, check_port, display_url

log = logging.getLogger(__name__)


def check_logs(output: Path) -> Path:
    logs = Path(output) / "logs"
    if not logs.is_dir():
        raise MeerkatError(
            f"no TensorBoard logs in {output}: {logs} does not exist; pass the folder that "
            "`meerkat run` or `meerkat train --output-dir` wrote"
        )
    return logs


def launch(logs: Path, host: str, port: int, debug: bool = False) -> None:
    """Start TensorBoard on `logs` in a daemon thread."""
    check_port(host, port, "TensorBoard")
    from tensorboard import program

    if not debug:
        # Its own logger and werkzeug's would print a line per request and the start-up hints.
        for name in ("tensorboard", "werkzeug", "absl"):
            logging.getLogger(name).setLevel(logging.ERROR)
    board = program.TensorBoard()
    # --load_fast=false: the Python reader, no data-server subprocess (and no advisory about it).
    board.configure(logdir=str(logs), host=host, port=port, load_fast="false", reload_interval=15)
    try:
        board.launch()
    except program.TensorBoardServerException as e:
        raise MeerkatError(f"TensorBoard cannot start on {host}: {e.msg}; pick another --port") from None


def serve(output: Path, host: str, port: int, debug: bool = False) -> None:
    """Serve OUTPUT/logs on host:port until Ctrl-C or SIGTERM."""
    logs = check_logs(output)
    launch(logs, host, port, debug)
    where = (
        " (listening on all addresses; from outside a container, the port -p published)" if host in WILDCARDS else ""
    )
    log.info("TensorBoard for %s at %s%s; Ctrl-C stops it", logs, display_url(host, port), where)
    # As pid 1 of a container, SIGTERM (docker stop) is ignored unless a handler is installed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        log.info("TensorBoard stopped")
