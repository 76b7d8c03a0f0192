"""What each DVC stage does: one module per stage, each a pure ``run(cfg)`` of the composed config.

``pipelines/<stage>.py`` is the Hydra entry point that calls ``zfnet.stages.<stage>.run``; tests call them
directly. Each one calls the library, writes its outputs where config says, and logs to W&B (job_type =
stage). This package imports nothing itself, so a stage's import closure (its DVC ``deps``) is its own.
"""
