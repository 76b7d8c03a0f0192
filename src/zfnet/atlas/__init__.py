"""The unit atlas (issue 28): every unit (feature map) of the chosen layers over the validation images, every
method side by side per unit, as a folder of data, pictures and static pages (``reports/atlas``), and W&B
tables. The stage: :mod:`zfnet.stages.atlas`. Its pieces, one concept each:

* ``statistics`` / ``ablation``: per-map statistics and top-k in one pass; the accuracy lost per zeroed map;
* ``images``: a unit's PNGs (3x3 grids, the synthesized image, the evolution strip);
* ``synthesis`` / ``evolution``: per-unit synthesized images; the top projection per checkpoint;
* ``dissection`` / ``report_links``: concepts from the dissect stage; links to the report's figures;
* ``data``: the JSON records the pages read (the folder's on-disk contract);
* ``explorer``: the static pages; ``wandb_tables``: the W&B tables and artifact.
"""
