"""Figure and table writers: every file the analyses' results become.

Analyses (:mod:`zfnet.analysis`) take tensors and modules and return tensors or DataFrames; the stages
(:mod:`zfnet.stages`) run them and hand the results to the modules here, which only draw and write PNG /
JSON / CSV files, one module per figure family: :mod:`.deconv` (Fig. 2, 6), :mod:`.evolution` (Fig. 4),
:mod:`.occlusion` (Fig. 7), :mod:`.invariance` (Fig. 5), :mod:`.correspondence` (Table 1's chart and files),
:mod:`.synthesis`, :mod:`.dissection`, :mod:`.filters` (filter grids), :mod:`.training` (training curves),
:mod:`.tables` (Table 1's files), :mod:`.index` (which figures each visualize part wrote), :mod:`.tiles`
(shared drawing and atomic writes).
"""
