"""After stage 5's numbers: the report page, TensorBoard's eval summaries and the model card.

Each is a step of its own, so one that fails costs neither the model nor the others. The pipeline
lists the ones that could not be written in run.json, and a rerun then redoes the report alone,
from the scores in report/predictions.csv.
"""

import logging
from pathlib import Path

from meerkat.core import faults
from meerkat.core.errors import MeerkatError
from meerkat.report import facts as run_facts
from meerkat.report import metrics, model_card, page, summaries

log = logging.getLogger(__name__)


def publish(cfg, run: dict, train_set, eval_set, scores) -> list[str]:
    """report/index.html with its figures, the summaries in logs/eval, and the model card
    (model/README.md, model/meerkat.json); returns what of them could not be written.

    `cfg` is the run's RecordsConfig, `run` what run.json will hold, `scores` the eval set's [N, classes].
    A failure here other than a file in the way (MeerkatError) leaves the model and metrics as they
    are: it is reported as a warning and the rest goes on.
    """
    output = Path(cfg.output_dir)
    facts, drawn = None, {}

    def gather():
        nonlocal facts
        evaluated = metrics.evaluate(eval_set.labels, scores, list(train_set.manifest["labels"]))
        facts = run_facts.gather(cfg, run, train_set, eval_set, evaluated, scores)

    steps = (  # (fault point, what the warning calls it, the step)
        ("facts", "the report's facts", gather),
        ("page", "the report page", lambda: drawn.update(page.write_page(facts))),
        ("tensorboard", "the TensorBoard summaries", lambda: summaries.write(facts, drawn, output / "logs" / "eval")),
        ("card", "the model card", lambda: model_card.write(facts, output / "model")),
    )
    problems = []
    for point, what, step in steps:
        if facts is None and point != "facts":
            problems.append(what)  # nothing to draw it from
            continue
        try:
            faults.point(f"report:{point}")
            step()
        except MeerkatError:
            raise
        except Exception as e:  # a bug here must not cost a trained model
            log.warning("warning: could not write %s: %s: %s (rerun with --debug for the traceback)", what,
                        type(e).__name__, e)  # fmt: skip
            log.debug("traceback", exc_info=True)
            problems.append(what)
    return problems
