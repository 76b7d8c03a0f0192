"""Weights & Biases tracking that never loses a run, and a dashboard a reader can find their way in.

One project; each run is named after what it is (``train``, ``ablate/zfnet_fc8192``, ``summary``; see
``run_name``), tagged with profile, model and stage, and carries the resolved config; ``group`` is one
pipeline run (see ``group_name``: the DVC experiment, the Hydra sweep, or git revision + params hash),
``job_type`` the stage. Offline by default; the standard ``WANDB_MODE`` / ``WANDB_DIR`` variables take
precedence over config. W&B's own console messages are off (``wandb.quiet``); each stage prints one line
saying where its run is and how to upload it. Only a job's rank 0 opens a run (other ranks of a DDP job
get a no-op Tracker). Every call is guarded: when W&B fails (not installed, unreachable, disk trouble) the
stage logs a warning and goes on, and its local outputs (metrics JSON, figures, tables) remain the record.

Artifacts with lineage: the prepare stage logs the mean image (``mean_image_artifact``), every training
run uses it, and with ``wandb.log_checkpoints`` logs its weights; offline runs record both, and
``wandb sync`` replays them with their lineage.

"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from zfnet.provenance import git_revision

log = logging.getLogger(__name__)

#: seconds ``wandb.init`` may wait for the server (``wandb.init_timeout``); W&B's own default is 90
DEFAULT_INIT_TIMEOUT = 10.0
#: seconds ``finish`` may wait for uploads (``wandb.finish_timeout``; 0: until uploaded)
DEFAULT_FINISH_TIMEOUT = 600.0
#: the DVC stage that runs a job type, where it is named otherwise (``ablate@<row>`` runs ``ablation``)
STAGE_OF_JOB = {"ablation": "ablate"}
#: the rank variables of torchrun / Lightning / SLURM / LSF: any of them non-zero means "not rank 0"
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")
#: overrides that do not distinguish the jobs of a multirun in a run's name (the variant is already in it)
_NAME_SKIP_OVERRIDES = ("train.variant", "sweep", "+sweep", "launcher", "+launcher")


def is_rank_zero() -> bool:
    """Whether this process is its job's first (rank variables read from the environment, so this holds
    before a Trainer exists and in the processes Lightning's DDP launcher starts)."""
    return all(os.environ.get(key) in (None, "", "0") for key in RANK_VARIABLES)


def _hydra():
    try:
        from hydra.core.hydra_config import HydraConfig
    except ImportError:  # pragma: no cover - hydra is a dependency
        return None
    return HydraConfig.get() if HydraConfig.initialized() else None


def _multirun(hc) -> bool:
    return hc is not None and str(hc.mode) == "RunMode.MULTIRUN"


def _hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def sweep_id(hc) -> str:
    """A multirun's id: its sweep folder (``hydra.sweep.dir``), relative to the working directory."""
    sweep = Path(str(hc.sweep.dir))
    try:
        sweep = sweep.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        pass
    return sweep.as_posix().strip("/").replace("/", "_")


def group_name(cfg: Mapping) -> str:
    """The W&B group of a pipeline run, the first that applies:

    - ``wandb.group``, else the ``ZFNET_WANDB_GROUP`` variable (explicit);
    - under ``dvc exp run``: the experiment's name (``DVC_EXP_NAME``, which DVC sets for every stage), the
      name ``dvc exp show`` lists;
    - a Hydra multirun: ``sweep-<sweep folder>`` (every job of the sweep, local or on SLURM);
    - a ``dvc repro`` stage (``DVC_STAGE`` set): ``<profile>-<git revision>-<hash of params.yaml>``, the
      snapshot every stage reads, so all stages share it whatever each pins on its command line;
    - a run by hand: ``adhoc-<profile>-<git revision>-<hash of the composed config without wandb>``.
    """
    from omegaconf import OmegaConf

    wcfg = cfg.get("wandb") or {}
    explicit = wcfg.get("group") or os.environ.get("ZFNET_WANDB_GROUP") or os.environ.get("DVC_EXP_NAME")
    if explicit:
        return str(explicit)
    hc = _hydra()
    if _multirun(hc):
        return f"sweep-{sweep_id(hc)}"
    profile = cfg.get("profile", "run")
    root = Path(os.environ.get("DVC_ROOT") or ".")
    snapshot = root / "params.yaml"
    rev = git_revision(root if root.is_dir() else None) or "nogit"
    if os.environ.get("DVC_STAGE") and snapshot.is_file():
        return f"{profile}-{rev}-{_hash(snapshot.read_text())}"
    plain = OmegaConf.to_container(OmegaConf.create(dict(cfg)), resolve=True)
    plain.pop("wandb", None)
    return f"adhoc-{profile}-{rev}-{_hash(OmegaConf.to_yaml(OmegaConf.create(plain), sort_keys=True))}"


def _variant(cfg: Mapping) -> str | None:
    train = cfg.get("train") or {}
    return str(train.get("variant")) if train.get("variant") else None


def run_name(cfg: Mapping, job_type: str, name: str | None = None) -> str:
    """What the run is: ``wandb.name`` when set; else the stage (``STAGE_OF_JOB`` maps job types to stage
    names), qualified by the call's ``name`` or the Table 3 variant (``ablate/zfnet_fc8192``), and in a
    Hydra multirun by the job's overrides (``train/model.width=0.25``)."""
    explicit = (cfg.get("wandb") or {}).get("name")
    if explicit:
        return str(explicit)
    stage = STAGE_OF_JOB.get(job_type, job_type)
    qualifier = name or (_variant(cfg) if job_type in STAGE_OF_JOB else None)
    if not qualifier or qualifier in (stage, job_type):
        out = stage
    else:  # a call's name that already starts with the stage is kept as it is
        out = qualifier if qualifier.startswith((f"{stage}/", f"{job_type}/")) else f"{stage}/{qualifier}"
    hc = _hydra()
    if _multirun(hc):
        overrides = [o for o in hc.overrides.task if o.split("=", 1)[0] not in _NAME_SKIP_OVERRIDES]
        out += f"/{','.join(overrides)}" if overrides else f"/job{hc.job.num}"
    return out


def run_tags(cfg: Mapping, job_type: str) -> list[str]:
    """``profile:<p>``, ``model:<m>``, ``stage:<DVC stage or job type>``, and ``variant:<row>`` when set."""
    model = cfg.get("model") or {}
    tags = [f"profile:{cfg.get('profile', 'run')}", f"model:{model.get('name', 'none')}",
            f"stage:{os.environ.get('DVC_STAGE') or STAGE_OF_JOB.get(job_type, job_type)}"]
    if _variant(cfg):
        tags.append(f"variant:{_variant(cfg)}")
    return [t[:64] for t in tags]  # W&B's limit


def provenance(cfg: Mapping) -> dict[str, str]:
    """How this run was started, logged in its config (``provenance``) so the dashboard can filter on it."""
    hc = _hydra()
    found = {"git_revision": git_revision(os.environ.get("DVC_ROOT") or None), "dvc_stage": os.environ.get("DVC_STAGE"),
             "dvc_experiment": os.environ.get("DVC_EXP_NAME"), "hydra_sweep": sweep_id(hc) if _multirun(hc) else None}
    return {k: v for k, v in found.items() if v}


def artifact_name(text: str) -> str:
    """``text`` as a W&B artifact name (letters, digits, ``-``, ``_``, ``.``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "artifact"


def mean_image_artifact(cfg: Mapping, prepared_dir: str | Path) -> tuple[str, str, list[Path]]:
    """The prepared mean image as an artifact, (name, type, files): what the prepare run logs and every
    training run uses (the same files have the same digest, so W&B links the two runs)."""
    prepared = Path(prepared_dir)
    files = [p for p in (prepared / "mean.npy", prepared / "mean.png") if p.is_file()]
    return artifact_name(f"mean-image-{cfg.get('profile', 'run')}"), "preprocessing", files


def model_artifact_name(cfg: Mapping, name: str | None) -> str:
    """A training run's weights: ``model-<model>`` for the train stage's run, ``model-<run name>`` for the
    others (``model-ablate-zfnet_fc8192``, ``model-zfnet_noclip``)."""
    model = (cfg.get("model") or {}).get("name", "model")
    return artifact_name(f"model-{model if name in (None, 'train') else name}")


class Tracker:
    """A W&B run, or nothing: every method is safe to call and degrades to a warning."""

    def __init__(self, run: Any | None, name: str | None = None):
        self.run = run
        self.name = name if name is not None else getattr(run, "name", None)

    def _guard(self, what: str, fn, *args, **kwargs):
        if self.run is None:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as err:  # W&B must never take a stage down with it
            log.warning("W&B %s failed (%s); local outputs are kept", what, err)
            return None

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        self._guard("log", lambda: self.run.log(dict(metrics), step=step))

    def summary(self, values: Mapping[str, Any]) -> None:
        self._guard("summary", lambda: self.run.summary.update(dict(values)))

    def image(self, key: str, image: Any, caption: str | None = None) -> None:
        self.images({key: (image, caption)})

    def images(self, images: Mapping[str, tuple[Any, str | None]]) -> None:
        """Several images in one step: key -> (path or array, caption)."""
        import wandb

        self._guard("image", lambda: self.run.log({
            key: wandb.Image(str(image) if isinstance(image, Path) else image, caption=caption)
            for key, (image, caption) in images.items()}))

    def table(self, key: str, frame: Any, images: tuple[str, ...] = ()) -> None:
        """``frame`` (pandas) as a ``wandb.Table``; the ``images`` columns hold image paths (or None), logged
        as ``wandb.Image`` cells."""
        import wandb

        def _table():
            if not images:
                return wandb.Table(dataframe=frame)
            cols = list(frame.columns)
            rows = [[wandb.Image(str(v)) if c in images and v is not None else v for c, v in zip(cols, row)]
                    for row in frame.itertuples(index=False, name=None)]
            return wandb.Table(columns=cols, data=rows)

        self._guard("table", lambda: self.run.log({key: _table()}))

    @staticmethod
    def _artifact(name: str, kind: str, paths: list[str | Path], metadata: Mapping | None = None):
        import wandb

        art = wandb.Artifact(name, type=kind, metadata=dict(metadata or {}))
        for p in map(Path, paths):
            if p.is_dir():  # file by file: add_dir prints to the console whatever the settings
                for f in sorted(f for f in p.rglob("*") if f.is_file()):
                    art.add_file(str(f), name=f.relative_to(p).as_posix())
            else:
                art.add_file(str(p))
        return art

    def artifact(self, name: str, kind: str, paths: list[str | Path], metadata: Mapping | None = None) -> None:
        """Log ``paths`` (files or folders) as this run's output artifact ``name`` of type ``kind``."""
        self._guard("artifact", lambda: self.run.log_artifact(self._artifact(name, kind, paths, metadata)))

    def use_artifact(self, name: str, kind: str, paths: list[str | Path]) -> None:
        """Declare ``paths`` (the files another run logged as artifact ``name``) an input of this run: the
        same content has the same digest, so W&B links the producing run to this one. Offline, where the
        SDK's ``use_artifact`` refuses, the use is recorded as ``use_artifact`` does online (an artifact
        record marked use-after-commit), and ``wandb sync`` replays it."""

        def _use():
            art = self._artifact(name, kind, paths)
            if getattr(self.run, "offline", False):
                self.run._log_artifact(art, is_user_created=True, use_after_commit=True)
            else:
                self.run.use_artifact(art)

        self._guard("use_artifact", _use)

    def finish(self) -> None:
        """End the run; never raises: an upload that fails at the end leaves the run's transaction log
        on disk, and the warning says how to upload it later (bounded by ``wandb.finish_timeout``). One
        line says where the run is (offline: and how to upload it)."""
        run, self.run = self.run, None
        if run is None:
            return
        try:
            run.finish()
        except Exception as err:  # W&B must never take a stage down with it
            sync_dir = _sync_dir(run)
            later = f"; upload it later with: wandb sync {sync_dir}" if sync_dir else ""
            log.warning("W&B finish failed (%s); local outputs are kept%s", _first_line(err), later)
            return
        _announce(run, self.name)

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, *exc) -> None:
        self.finish()


def _announce(run: Any, name: str | None) -> None:
    """The stage's one W&B line (W&B's own messages are off with ``wandb.quiet``)."""
    try:
        where = f"W&B run {name or run.name!r} (group {run.group!r})"
        if getattr(run, "offline", False):
            log.info("%s saved offline; upload it with: wandb sync %s", where, _sync_dir(run))
        elif getattr(run, "url", None):
            log.info("%s: %s", where, run.url)
    except Exception:  # a message must never fail a stage
        pass


_OFFLINE_MODES = ("offline", "dryrun", "disabled")


def _seconds(wcfg: Mapping, key: str, default: float, allow_zero: bool) -> float:
    value = wcfg.get(key, default)
    if value is None:
        value = default
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        expected = "a number of seconds >= 0 (0: no limit)" if allow_zero else "a number of seconds > 0"
        raise ValueError(f"config key wandb.{key}: expected {expected}, got {value!r}")
    return float(value)


def _first_line(err: BaseException) -> str:
    text = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return text if len(text) <= 300 else text[:297] + "..."


def start_run(cfg: Mapping, job_type: str, name: str | None = None) -> Tracker:
    """Start the stage's W&B run with the resolved config; a Tracker with no run if W&B fails, and on
    every rank but a job's first (``is_rank_zero``).

    The run is named by ``run_name`` (``wandb.name`` overrides), tagged by ``run_tags``, grouped by
    ``group_name``; its config is ``cfg`` resolved plus ``provenance``. With ``wandb.quiet`` (the default)
    W&B prints nothing (``WANDB_SILENT`` / ``WANDB_QUIET``, when set, decide instead); the Tracker's
    ``finish`` prints one line naming the run and the ``wandb sync`` command.

    Online, ``wandb.init`` waits at most ``wandb.init_timeout`` seconds for the server (W&B's defaults
    wait 90 s, plus up to 15 s of account look-ups and 20 s of SDK telemetry at exit, per stage; the
    latter two are skipped here). When the online start fails the run is logged offline instead, with one
    warning naming the stage, the reason and the ``wandb sync`` command, so nothing is lost.
    ``wandb.finish_timeout`` bounds the upload at ``finish`` (0: wait until everything is uploaded).
    """
    from omegaconf import OmegaConf

    wcfg = cfg.get("wandb", {}) or {}
    mode = os.environ.get("WANDB_MODE") or wcfg.get("mode") or "offline"
    wandb_dir = Path(os.environ.get("WANDB_DIR") or wcfg.get("dir") or ".")
    init_timeout = _seconds(wcfg, "init_timeout", DEFAULT_INIT_TIMEOUT, allow_zero=False)
    finish_timeout = _seconds(wcfg, "finish_timeout", DEFAULT_FINISH_TIMEOUT, allow_zero=True)
    online = mode not in _OFFLINE_MODES
    if not is_rank_zero():  # a DDP job's other ranks: one run per job, opened by rank 0
        log.debug("W&B: not rank 0, stage %s logs nothing", job_type)
        return Tracker(None)
    display = run_name(cfg, job_type, name)
    try:
        import wandb

        wandb_dir.mkdir(parents=True, exist_ok=True)
        if online:
            # Two SDK extras wait on an unreachable server outside init_timeout: the account look-up
            # ("logged in as ...", 5 s a try, up to three tries before the run starts) and the SDK's own
            # usage telemetry (a 10 s probe per exporter at exit). The run needs neither; an explicit
            # WANDB_ERROR_REPORTING is respected.
            os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
            wandb.setup(settings=wandb.Settings(x_disable_viewer=True))
        quiet = {}
        if wcfg.get("quiet", True) and not (os.environ.get("WANDB_SILENT") or os.environ.get("WANDB_QUIET")):
            quiet = {"silent": True}
        settings = wandb.Settings(init_timeout=init_timeout, finish_timeout=finish_timeout, **quiet)
        config = OmegaConf.to_container(OmegaConf.create(dict(cfg)), resolve=True)
        config["provenance"] = provenance(cfg)
        kwargs = dict(
            project=wcfg.get("project", "zfnet"),
            entity=wcfg.get("entity"),
            group=group_name(cfg),
            job_type=job_type,
            name=display,
            tags=run_tags(cfg, job_type),
            dir=str(wandb_dir),
            config=config,
            reinit="finish_previous",
            settings=settings,
        )
        try:
            return Tracker(wandb.init(mode=mode, **kwargs), display)
        except Exception as err:
            if not online:
                raise
            reason = _first_line(err)
        run = wandb.init(mode="offline", **kwargs)
    except Exception as err:
        log.warning(
            "W&B could not start (%s); stage %s continues with local outputs only", _first_line(err), job_type
        )
        return Tracker(None)
    sync_dir = _sync_dir(run) or str(wandb_dir / "wandb" / "offline-run-*")
    log.warning(
        "W&B could not start online for stage %s (%s); logging offline instead, upload later with: "
        "wandb sync %s",
        job_type,
        reason,
        sync_dir,
    )
    return Tracker(run, display)


def _sync_dir(run: Any) -> str | None:
    try:
        return str(run.settings.sync_dir)
    except Exception:
        return None
