"""Figure and table writers: every file the analyses' results become.

Analyses (:mod:`zfnet.analysis`) take tensors and modules and return tensors or DataFrames; the modules
here turn them into PNG / JSON / CSV files, one module per figure family: :mod:`.deconv` (Fig. 2, 6, the
stage's deconvnet export), :mod:`.evolution` (Fig. 4), :mod:`.sensitivity` (Fig. 5, 7, Table 1's chart),
:mod:`.filters` (filter grids), :mod:`.training` (training curves), :mod:`.tables` (Table 1's files),
:mod:`.tiles` (shared drawing and atomic writes).
"""
