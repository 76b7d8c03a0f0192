"""The static HTML report (``reports/index.html`` + ``reports/pages/*.html``): every figure and table the
pipeline produced, ours beside the paper's, with the run's provenance (git revision, params, dataset sizes,
rejected images), and the W&B summary run that mirrors it.

* :mod:`.collect`: what the report shows, gathered from the pipeline's outputs (tables, figure groups and
  their notes, provenance, the data banner's facts);
* :mod:`.display`: a table as a reader sees it;
* :mod:`.render`: the pages, from the Jinja2 templates in ``templates/`` (autoescaped);
* :mod:`.wandb_summary`: the W&B summary run.

Every table in ``report.tables_dir`` and every folder of figures shows up without code here: a figure
group describes itself in its ``notes.json`` (:mod:`zfnet.figures.notes`), a table in ``<stem>.notes.json``.
"""

from zfnet.report.collect import all_figure_groups, provenance, tables
from zfnet.report.display import display_frame
from zfnet.report.render import write_report
from zfnet.report.wandb_summary import log_summary

__all__ = ["all_figure_groups", "display_frame", "log_summary", "provenance", "tables", "write_report"]
