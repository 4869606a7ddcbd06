"""matplotlib without pyplot: Figures drawn on the Agg canvas (no global state, no display), as PNG bytes.

matplotlib needs a writable config folder for its font cache; a read-only container run under any
uid has no writable home, so one is found or made in the temporary folder.
"""

import io
import os
import tempfile
from pathlib import Path


def figure_class():
    """matplotlib's Figure, drawing on Agg, its config and font cache in a writable folder."""
    if "MPLCONFIGDIR" not in os.environ:
        try:
            default = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "matplotlib"
            default.mkdir(parents=True, exist_ok=True)
            writable = os.access(default, os.W_OK)
        except (OSError, RuntimeError):  # RuntimeError: no HOME and no passwd entry
            writable = False
        if not writable:
            # One per uid, so the font cache is built once; a folder someone else made is not used.
            folder = Path(tempfile.gettempdir()) / f"meerkat-matplotlib-{os.getuid()}"
            try:
                folder.mkdir(mode=0o700, exist_ok=True)
                if folder.stat().st_uid != os.getuid() or not os.access(folder, os.W_OK):
                    raise PermissionError(folder)
            except OSError:
                folder = Path(tempfile.mkdtemp(prefix="meerkat-matplotlib-"))
            os.environ["MPLCONFIGDIR"] = str(folder)
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure


def png(fig, dpi: int = 150) -> bytes:
    """The figure as PNG bytes, with no Software tag naming matplotlib's version."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()
