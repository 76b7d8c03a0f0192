"""The configuration's schema: every key's type and allowed range, checked before a stage does anything.

``conf/`` holds the values; this module holds what a value may be. Each group of the composed config is
a dataclass (an OmegaConf structured config: ``OmegaConf.structured(Config)``); each field's ``metadata``
may carry a range or choice (``gt``, ``ge``, ``between``, ``one_of``, ``each``), and ``CROSS_CHECKS``
relate keys to each other (``data.crop <= data.resize``, ...).

``validate(cfg)`` is the first call of every stage's ``run(cfg)``:

1. the config resolved (an interpolation to nowhere or a ``???`` left unset fails, named by its key);
2. every value checked strictly against its field's type (``'0.01'`` is not a float, ``'false'`` not a
   bool: the stage would receive them as composed) and its range or choice, all problems at once;
3. the config merged into the structured schema: a key in no dataclass (a typo in ``conf/``) fails, named
   by its full key, with the closest known key;
4. the cross-key rules.

Every problem found lands in one ``ConfigError`` (a ``ValueError``) whose message reads
``conf error: train.epochs=-1: expected an int >= 1``. ``validate`` never rewrites the config: it returns
the very object it was given, so a stage runs on exactly what was composed (fingerprints, W&B groups and
``ablation.variant_config``'s merges see the same keys and values). Keys a partial config leaves out are
not required here; the code that reads them says so. Optional keys (``wandb.init_timeout``,
``wandb.finish_timeout``, ``prepare.fast_decode``) carry their default in the schema for reference.

Validation imports nothing but OmegaConf and takes tens of milliseconds; the pipelines' entry points
print a ``ConfigError`` as one line and exit with status 2 (``exit_on_config_error``). A new key in
``conf/`` needs its field here (tests/test_schema.py composes every profile and validates it).
"""

import dataclasses
import difflib
import math
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Union, get_args, get_origin, get_type_hints

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException

from zfnet.paper import REMOVABLE


class ConfigError(ValueError):
    """A config value of the wrong type or outside its range; ``problems``: one line per key."""

    def __init__(self, problems: List[str]):
        self.problems = list(problems)
        super().__init__("conf error: " + "; ".join(self.problems))


# ------------------------------------------------------------------------------------------ checks
class Check(NamedTuple):
    """A range or choice: ``text`` completes "expected <type> ..." (or, when ``alone``, replaces it)."""

    text: str
    ok: Callable[[Any], bool]
    alone: bool = False


def gt(lo: float) -> Check:
    return Check(f"> {lo}", lambda v: v > lo)


def ge(lo: float) -> Check:
    return Check(f">= {lo}", lambda v: v >= lo)


def between(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> Check:
    text = f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    return Check(text, lambda v: (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi))


def one_of(*choices: Any) -> Check:
    return Check(f"one of {list(choices)}", lambda v: v in choices, alone=True)


def each(check: Check) -> Check:
    """A check of every item of a list."""
    return Check(f"each {check.text}" if check.alone else check.text, lambda v: all(check.ok(x) for x in v))


def nonempty(check: Optional[Check] = None) -> Check:
    inner = check.text if check else ""
    return Check(f"{inner} (at least one)".strip(), lambda v: len(v) >= 1 and (check is None or check.ok(v)))


def length(n: int, check: Check) -> Check:
    return Check(f"{check.text} (exactly {n})", lambda v: len(v) == n and check.ok(v))


def odd_positive() -> Check:
    return Check(">= 1 and odd", lambda v: v >= 1 and v % 2 == 1)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# Lightning's accepted ``precision`` values (lightning_fabric's _PRECISION_INPUT; a test compares them)
PRECISIONS = ("transformer-engine", "transformer-engine-float16", "16-true", "16-mixed", "bf16-true",
              "bf16-mixed", "32-true", "64-true", 64, 32, 16, "64", "32", "16", "bf16")
DEVICES = Check("an int >= 1, -1 (all), 'auto', or a list of device indices >= 0",
                lambda v: (_is_int(v) and (v >= 1 or v == -1)) or v == "auto"
                or (isinstance(v, str) and all(p.strip().isdigit() for p in v.split(",")))
                or (isinstance(v, list) and len(v) >= 1 and all(_is_int(x) and x >= 0 for x in v)),
                alone=True)
LIMIT_BATCHES = Check("an int >= 1 (batches) or a float in (0, 1] (a fraction of the epoch)",
                      lambda v: (_is_int(v) and v >= 1) or (isinstance(v, float) and 0 < v <= 1), alone=True)
LAYERS_REMOVABLE = REMOVABLE
UNIT_INTERVAL_OPEN = between(0, 1, lo_open=False, hi_open=True)


def v(default: Any = MISSING, check: Optional[Check] = None) -> Any:
    """A schema field: its default (MISSING: conf/ gives the value) and its range or choice."""
    meta = {"check": check} if check else {}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


def group(cls: type) -> Any:
    return field(default_factory=cls)


# ------------------------------------------------------------------------------------------ groups
@dataclass
class ImagenetDemo:
    num_classes: int = v(check=ge(1))
    train_per_class: int = v(check=ge(1))
    val_per_class: int = v(check=ge(1))


@dataclass
class Caltech101Demo:
    num_classes: int = v(check=ge(1))
    per_class: int = v(check=ge(1))
    background: int = v(check=ge(0))


@dataclass
class Caltech256Demo:
    num_classes: int = v(check=ge(1))
    per_class: int = v(check=ge(1))
    clutter: int = v(check=ge(0))


@dataclass
class VocDemo:
    num_images: int = v(check=ge(1))


@dataclass
class DuplicatesDemo:
    caltech101: int = v(check=ge(0))
    caltech256: int = v(check=ge(0))


@dataclass
class BrodenDemo:
    images: int = v(check=ge(0))
    size: int = v(check=between(32, 1024))


@dataclass
class DogsCatsDemo:
    train_per_class: int = v(check=ge(0))
    test: int = v(check=ge(0))


@dataclass
class DemoData:
    out_dir: str = v()
    seed: int = v(check=ge(0))
    min_side: int = v(check=ge(1))
    max_side: int = v(check=ge(1))
    jpeg_quality: int = v(check=between(1, 100))
    workers: int = v(check=ge(1))
    imagenet: ImagenetDemo = group(ImagenetDemo)
    caltech101: Caltech101Demo = group(Caltech101Demo)
    caltech256: Caltech256Demo = group(Caltech256Demo)
    voc: VocDemo = group(VocDemo)
    duplicates: DuplicatesDemo = group(DuplicatesDemo)
    broden: BrodenDemo = group(BrodenDemo)
    dogscats: DogsCatsDemo = group(DogsCatsDemo)


@dataclass
class Data:
    imagenet_root: str = v()
    val_boxes: Optional[str] = v()
    resize: int = v(check=ge(1))
    crop: int = v(check=ge(1))
    crops: str = v(check=one_of("ten", "random"))
    pixel_scale: float = v(check=gt(0))
    batch_size: int = v(check=ge(1))
    num_workers: int = v(check=ge(0))
    in_memory: bool = v()


@dataclass
class Prepare:
    out_dir: str = v()
    shard_size: int = v(check=ge(1))
    workers: int = v(check=ge(1))
    shard_index: int = v(check=ge(0))
    shard_count: int = v(check=ge(1))
    max_image_pixels: int = v(check=ge(1))
    encoding: str = v(check=one_of("npy", "jpg"))
    quality: int = v(check=between(1, 100))
    fast_decode: bool = v(False)  # optional: reduced-scale JPEG decoding (not the exact default)


@dataclass
class Lrn:
    size: int = v(check=odd_positive())
    alpha: float = v(check=ge(0))
    beta: float = v(check=ge(0))
    k: float = v(check=ge(0))


@dataclass
class Model:
    name: str = v(check=one_of("zfnet", "alexnet"))
    width: float = v(check=gt(0))
    conv_maps: Optional[List[int]] = v(check=length(5, each(ge(1))))
    fc_units: Optional[List[int]] = v(check=length(2, each(ge(1))))
    remove: List[str] = v(check=each(one_of(*LAYERS_REMOVABLE)))
    dropout: float = v(check=UNIT_INTERVAL_OPEN)
    init: str = v(check=one_of("paper", "kaiming"))
    lrn: Optional[Lrn] = group(Lrn)


@dataclass
class Train:
    out_dir: Optional[str] = v()  # null: the run's Hydra output dir (zfnet.training.outputs)
    metrics_path: Optional[str] = v()
    history_path: Optional[str] = v()
    epochs: int = v(check=ge(1))
    batch_size: int = v(check=ge(1))
    lr: float = v(check=ge(0))  # torch's own bound; 0 keeps the weights (tests compare runs at their init)
    momentum: float = v(check=UNIT_INTERVAL_OPEN)
    weight_decay: float = v(check=ge(0))
    lr_factor: float = v(check=between(0, 1, lo_open=True, hi_open=True))
    lr_patience: int = v(check=ge(0))
    rms_clip: Optional[float] = v(check=gt(0))
    checkpoint_epochs: List[int] = v(check=each(ge(1)))
    limit_train_batches: Optional[Any] = v(check=LIMIT_BATCHES)
    eval_crop_chunk: int = v(check=ge(10))  # crops per validation forward (whole images' ten crops)
    deterministic: bool = v()
    variant: Optional[str] = v()


@dataclass
class Trainer:
    accelerator: str = v(check=one_of("cpu", "gpu", "cuda", "mps", "tpu", "auto"))
    devices: Any = v(check=DEVICES)
    num_nodes: int = v(check=ge(1))
    strategy: str = v()
    precision: Any = v(check=one_of(*PRECISIONS))
    threads: int = v(check=ge(1))  # torch threads per rank, set per job


@dataclass
class Deconv:
    maps_per_layer: int = v(check=ge(1))
    k: int = v(check=ge(1))


@dataclass
class Occlusion:
    images: int = v(check=ge(1))
    size: Optional[int] = v(check=ge(1))
    stride: Optional[int] = v(check=ge(1))
    layer: str = v()


@dataclass
class Invariance:
    images: int = v(check=ge(1))


# ``class`` is a Python keyword: this one dataclass is built from its annotations (no generated __init__,
# which would need a parameter named ``class``); OmegaConf reads its fields like any other.
Correspondence = dataclass(init=False, repr=False, eq=False)(type("Correspondence", (), {
    "__annotations__": {"class": str, "images": int, "size": Optional[int], "repeats": int},
    "__module__": __name__,
    "class": v(), "images": v(check=ge(1)), "size": v(check=ge(1)), "repeats": v(check=ge(1)),
}))


@dataclass
class Fig6:
    alexnet: str = v()
    zfnet: str = v()
    zfnet_noclip: str = v()


SYNTHESIS_CLASSES = Check("'all', an int >= 0 (the first n classes) or a list of class indices >= 0",
                          lambda v: v == "all" or (_is_int(v) and v >= 0)
                          or (isinstance(v, list) and all(_is_int(x) and x >= 0 for x in v)), alone=True)


@dataclass
class Synthesis:
    """Network-centric synthesis in the visualize stage (zfnet.figures.synthesis.export_synthesis)."""

    enabled: bool = v()
    steps: int = v(check=ge(1))
    lr: float = v(check=gt(0))
    l2: float = v(check=ge(0))
    tv: float = v(check=ge(0))
    jitter: int = v(check=ge(0))
    rotate: float = v(check=ge(0))
    blur_every: int = v(check=ge(0))
    param: str = v(check=one_of("fft", "pixel"))
    classes: Any = v(check=SYNTHESIS_CLASSES)
    max_classes: int = v(check=ge(1))
    maps_per_layer: int = v(check=ge(1))
    inversion_images: int = v(check=ge(0))
    inversion_steps: int = v(check=ge(1))
    inversion_tv: float = v(check=ge(0))
    layers: Optional[List[str]] = v()
    seed: int = v(check=ge(0))
    threads: Optional[int] = v(check=ge(1))


VISUALIZE_IMAGES = Check("an int >= 1 or 'all'", lambda v: v == "all" or (_is_int(v) and v >= 1), alone=True)


@dataclass
class Visualize:
    out_dir: str = v()
    checkpoint: str = v()
    checkpoints_dir: str = v()
    tables_dir: str = v()
    images: Any = v(check=VISUALIZE_IMAGES)  # the validation images searched (streamed): a count or 'all'
    batch_size: int = v(check=ge(1))         # images per forward of the searches: the stage's memory
    deconv: Deconv = group(Deconv)
    occlusion: Occlusion = group(Occlusion)
    invariance: Invariance = group(Invariance)
    curves_dir: Optional[str] = v()
    correspondence: Correspondence = group(Correspondence)
    fig6: Fig6 = group(Fig6)
    model: Optional[str] = v()          # a registered model or torchvision:<arch>; null: the checkpoint's own
    weights: Optional[str] = v()        # a state-dict file for `model`
    layers: Optional[List[str]] = v()   # layer paths to analyse; null: the model's paper layers
    image_folder: Optional[str] = v()   # an ImageFolder-style folder; null: the prepared validation shards
    ground_truth: Optional[str] = v()   # folder of ground truth the dataset lacks (landmarks.csv for Table 1)
    synthesis: Synthesis = group(Synthesis)


@dataclass
class Report:
    out: str = v()
    tables_dir: str = v()
    title: str = v()
    figure_folders: List[str] = v()


@dataclass
class Wandb:
    project: str = v()
    entity: Optional[str] = v()
    mode: str = v(check=one_of("online", "offline", "disabled"))
    group: Optional[str] = v()
    name: Optional[str] = v()
    dir: Optional[str] = v()
    log_checkpoints: bool = v()
    init_timeout: float = v(10.0, check=gt(0))  # optional: seconds wandb.init may wait for the server
    finish_timeout: float = v(600.0, check=ge(0))  # optional: seconds finish may wait for uploads (0: until done)
    quiet: bool = v(True)  # optional: W&B's own console messages off (one line per stage instead)


@dataclass
class PaperErrors:
    train_top1: Optional[float] = v(check=between(0, 100))
    val_top1: Optional[float] = v(check=between(0, 100))
    val_top5: Optional[float] = v(check=between(0, 100))


@dataclass
class ModelOverrides:
    """A Table 3 row's model keys: any subset of ``model``."""

    name: Optional[str] = v(None, check=one_of("zfnet", "alexnet"))
    width: Optional[float] = v(None, check=gt(0))
    conv_maps: Optional[List[int]] = v(None, check=length(5, each(ge(1))))
    fc_units: Optional[List[int]] = v(None, check=length(2, each(ge(1))))
    remove: Optional[List[str]] = v(None, check=each(one_of(*LAYERS_REMOVABLE)))
    dropout: Optional[float] = v(None, check=UNIT_INTERVAL_OPEN)
    init: Optional[str] = v(None, check=one_of("paper", "kaiming"))
    lrn: Optional[Lrn] = v(None)


@dataclass
class AblationRow:
    row: str = v()
    base: str = v(check=one_of("zfnet", "alexnet"))
    paper: PaperErrors = group(PaperErrors)
    model: ModelOverrides = group(ModelOverrides)


@dataclass
class Table3:
    epochs: int = v(check=ge(1))
    width: float = v(check=gt(0))
    out_dir: str = v()
    metrics_dir: str = v()
    table: str = v()


@dataclass
class Overlap:
    out_dir: str = v()
    metrics_path: str = v()
    datasets: List[str] = v(check=each(one_of("caltech101", "caltech256")))
    size: int = v(check=ge(1))
    threshold: float = v(check=between(0, 1, lo_open=True))
    block: int = v(check=ge(1))
    workers: int = v(check=ge(1))
    remove: bool = v()
    ground_truth: Optional[str] = v()


@dataclass
class Features:
    layers: List[str] = v(check=nonempty())
    grid: int = v(check=ge(1))
    batch_size: int = v(check=ge(1))
    chunk: int = v(check=ge(1))  # images decoded at a time: the extraction's memory


@dataclass
class Solver:
    C: float = v(check=gt(0))
    max_iter: int = v(check=ge(1))


@dataclass
class Classifier:
    layer: str = v()
    softmax: Solver = group(Solver)
    svm: Solver = group(Solver)


@dataclass
class Caltech101:
    root: str = v()
    background: bool = v()
    train_per_class: List[int] = v(check=nonempty(each(ge(1))))
    test_per_class: Optional[int] = v(check=ge(1))
    folds: int = v(check=ge(1))


@dataclass
class Caltech256:
    root: str = v()
    clutter: bool = v()
    train_per_class: List[int] = v(check=nonempty(each(ge(1))))
    test_per_class: Optional[int] = v(check=ge(1))
    folds: int = v(check=ge(1))


@dataclass
class Voc2012:
    root: str = v()
    train_split: str = v(check=one_of("train", "val", "trainval"))
    test_split: str = v(check=one_of("train", "val", "trainval"))


@dataclass
class Table7:
    caltech101: int = v(check=ge(1))
    caltech256: int = v(check=ge(1))
    classifiers: List[str] = v(check=each(one_of("svm", "softmax")))


@dataclass
class NonPretrained:
    enabled: bool = v()
    folds: int = v(check=ge(1))
    epochs: int = v(check=ge(1))
    batch_size: int = v(check=ge(1))
    lr: float = v(check=ge(0))  # torch's own bound; 0 keeps the weights (tests compare runs at their init)
    momentum: float = v(check=UNIT_INTERVAL_OPEN)
    weight_decay: float = v(check=ge(0))


@dataclass
class Transfer:
    checkpoint: str = v()
    cache_dir: str = v()
    tables_dir: str = v()
    figures_dir: str = v()
    metrics_path: str = v()
    seed: int = v(check=ge(0))
    workers: int = v(check=ge(1))
    features: Features = group(Features)
    classifier: Classifier = group(Classifier)
    caltech101: Caltech101 = group(Caltech101)
    caltech256: Caltech256 = group(Caltech256)
    voc2012: Voc2012 = group(Voc2012)
    table7: Table7 = group(Table7)
    nonpretrained: NonPretrained = group(NonPretrained)


@dataclass
class FinetuneStrategy:
    trainable: str = v(check=one_of("last", "fc", "all"))
    pretrained: bool = v()
    lr: float = v(check=ge(0))
    pretrained_lr: Optional[float] = v(None, check=ge(0))


@dataclass
class FinetuneAnalysis:
    layer: Optional[str] = v()
    maps: int = v(check=ge(1))
    k: int = v(check=ge(1))


@dataclass
class Finetune:
    """The finetune stage (zfnet.finetune): data, source network, learning curve, strategies."""
    root: str = v()
    classes: Optional[List[str]] = v(check=Check("a list of at least 2 distinct class names",
                                                 lambda c: len(c) >= 2 and len(set(c)) == len(c)))
    ground_truth: Optional[str] = v()
    checkpoint: str = v()
    model: Optional[str] = v()
    weights: Optional[str] = v()
    mean: Any = v()
    std: Optional[List[float]] = v(check=length(3, each(gt(0))))
    val_per_class: int = v(check=ge(1))
    train_per_class: List[int] = v(check=nonempty(each(ge(1))))
    epochs: int = v(check=ge(1))
    batch_size: int = v(check=ge(1))
    momentum: float = v(check=UNIT_INTERVAL_OPEN)
    weight_decay: float = v(check=ge(0))
    seed: int = v(check=ge(0))
    workers: int = v(check=ge(1))
    analysis: FinetuneAnalysis = group(FinetuneAnalysis)
    only: Optional[str] = v()
    out_dir: str = v()
    metrics_dir: str = v()
    models_dir: str = v()
    table: str = v()
    strategies: Dict[str, FinetuneStrategy] = v({})


@dataclass
class ClaimsEvolution:
    fraction: float = v(check=gt(0))
    early: List[str] = v(check=nonempty())
    late: str = v()


@dataclass
class ClaimsInvariance:
    images: int = v(check=ge(1))
    margin: float = v(check=ge(0))
    over_control: float = v(check=ge(0))
    linear_r2: float = v(check=between(0, 1))
    linear_z: float = v(check=ge(0))
    rotation_drop: float = v(check=between(0, 1))
    min_over_uniform: float = v(check=ge(0))


@dataclass
class ClaimsFilters:
    rms_limit: Optional[float] = v(check=gt(0))
    rms_tolerance: float = v(check=ge(0))
    dominance_ratio: float = v(check=ge(1))
    dominance_over_control: float = v(check=ge(1))
    dead_fraction: float = v(check=between(0, 1))
    dead_over_control: float = v(check=between(0, 1))
    bands: List[float] = v(check=length(2, each(between(0, 1))))
    mid_over_control: float = v(check=ge(0))


@dataclass
class ClaimsOcclusion:
    min_images: int = v(check=ge(1))
    alpha: float = v(check=between(0, 1, lo_open=True))
    permutations: int = v(check=ge(1))
    z: float = v(check=ge(0))


@dataclass
class ClaimsCorrespondence:
    z: float = v(check=ge(0))


@dataclass
class ClaimsTable3:
    little: float = v(check=ge(0))
    much_more: float = v(check=ge(0))
    chance_margin: float = v(check=ge(0))
    z: float = v(check=ge(0))


@dataclass
class ClaimsTransfer:
    depth_rho: float = v(check=between(-1, 1))
    z: float = v(check=ge(0))


@dataclass
class ClaimsGrouping:
    layers: List[str] = v(check=nonempty())
    high_layers: List[str] = v(check=nonempty())
    maps_per_layer: int = v(check=ge(1))
    k: int = v(check=ge(2))
    images: int = v(check=ge(2))
    draws: int = v(check=ge(1))
    z: float = v(check=ge(0))


@dataclass
class Claims:
    """The claims stage (zfnet.claims): where the pipeline's outputs are and the tolerances of each verdict."""
    metrics_path: str = v()
    table: str = v()
    checkpoints_dir: str = v()
    model: str = v()
    prepared_dir: str = v()
    curves_dir: str = v()
    occlusion_boxes: str = v()
    tables_dir: str = v()
    train_metrics: str = v()
    ablation_metrics: str = v()
    alexnet: str = v()
    zfnet: str = v()
    zfnet_noclip: str = v()
    ablation_models: str = v()
    bootstrap: int = v(check=ge(2))
    evolution: ClaimsEvolution = group(ClaimsEvolution)
    invariance: ClaimsInvariance = group(ClaimsInvariance)
    filters: ClaimsFilters = group(ClaimsFilters)
    occlusion: ClaimsOcclusion = group(ClaimsOcclusion)
    correspondence: ClaimsCorrespondence = group(ClaimsCorrespondence)
    table3: ClaimsTable3 = group(ClaimsTable3)
    transfer: ClaimsTransfer = group(ClaimsTransfer)
    grouping: ClaimsGrouping = group(ClaimsGrouping)


@dataclass
class Dissect:
    """The dissect stage (zfnet.stages.dissect): probe set, model and layers, NetDissect's thresholds."""
    probe_dir: str = v()
    categories: Optional[List[str]] = v(check=nonempty())
    max_images: Optional[int] = v(check=ge(1))
    checkpoint: str = v()
    model: Optional[str] = v()
    weights: Optional[str] = v()
    layers: Optional[List[str]] = v(check=nonempty())
    input_size: Optional[int] = v(check=ge(8))
    mean: Any = v()
    std: Optional[List[float]] = v(check=length(3, each(gt(0))))
    scale: float = v(check=gt(0))
    quantile: float = v(check=between(0, 1, lo_open=True, hi_open=True))
    iou_threshold: float = v(check=UNIT_INTERVAL_OPEN)
    top_units: int = v(check=ge(1))
    top_images: int = v(check=ge(1))
    batch_size: int = v(check=ge(1))
    device: Optional[str] = v()
    figures_dir: str = v()
    tables_dir: str = v()
    metrics_path: str = v()


@dataclass
class Config:
    """The composed config (``conf/config.yaml`` + a profile; ``params.yaml``)."""

    demo_data: DemoData = group(DemoData)
    data: Data = group(Data)
    prepare: Prepare = group(Prepare)
    model: Model = group(Model)
    train: Train = group(Train)
    trainer: Trainer = group(Trainer)
    visualize: Visualize = group(Visualize)
    report: Report = group(Report)
    wandb: Wandb = group(Wandb)
    ablation: Dict[str, AblationRow] = v({})
    table3: Table3 = group(Table3)
    overlap: Overlap = group(Overlap)
    transfer: Transfer = group(Transfer)
    claims: Claims = group(Claims)
    finetune: Finetune = group(Finetune)
    dissect: Dissect = group(Dissect)
    seed: int = v(check=ge(0))
    profile: str = v()


# Keys that relate to each other: (keys, rule on their values, what is expected of the first key)
CROSS_CHECKS: List[tuple] = [
    (("data.crop", "data.resize"), lambda crop, resize: crop <= resize,
     "expected <= data.resize={1!r} (the crop is cut from the resized image)"),
    (("prepare.shard_index", "prepare.shard_count"), lambda i, n: i < n,
     "expected < prepare.shard_count={1!r} (this machine prepares shards i, i+n, ...)"),
    (("demo_data.min_side", "demo_data.max_side"), lambda lo, hi: lo <= hi, "expected <= demo_data.max_side={1!r}"),
    (("transfer.classifier.layer", "transfer.features.layers"), lambda layer, layers: layer in layers,
     "expected one of transfer.features.layers={1!r}"),
    (("train.variant", "ablation"), lambda variant, rows: variant is None or variant in rows,
     "expected null or a Table 3 row of `ablation`: {1}"),
    (("finetune.only", "finetune.strategies"), lambda only, rows: only is None or only in rows,
     "expected null or a strategy of `finetune.strategies`: {1}"),
    (("visualize.synthesis.layers", "visualize.layers"),
     lambda syn, layers: syn is None or set(syn) <= set(layers or ("conv1", "conv2", "conv3", "conv4", "conv5")),
     "expected null or a subset of the Fig. 2 layers, visualize.layers={1!r} (null: conv1..conv5)"),
]


# ------------------------------------------------------------------------------------------ validation
_ABSENT = object()


def _unwrap_optional(tp: Any) -> tuple:
    if get_origin(tp) is Union:
        args = [a for a in get_args(tp) if a is not type(None)]
        return True, (args[0] if len(args) == 1 else Any)
    return False, tp


_NAMES = {int: ("an int", "ints"), float: ("a float", "floats"), bool: ("a bool (true or false)", "bools"),
          str: ("a string", "strings")}


def describe(tp: Any, check: Optional[Check] = None) -> str:
    """What a field accepts, in words: ``a float > 0``, ``null or an int >= 1``, ``one of ['npy', 'jpg']``."""
    optional, tp = _unwrap_optional(tp)
    if check is not None and check.alone and get_origin(tp) is not list:
        text = check.text
    else:
        if get_origin(tp) is list:
            (item,) = get_args(tp) or (Any,)
            base = f"a list of {_NAMES.get(item, ('', 'values'))[1]}"
        elif dataclasses.is_dataclass(tp) or get_origin(tp) is dict:
            base = "a mapping"
        else:
            base = _NAMES.get(tp, ("a value", ""))[0]
        if check is None:
            text = base
        else:
            text = f"{base}, {check.text}" if check.text.startswith("each one of") else f"{base} {check.text}"
    return f"null or {text}" if optional else text


def _strict_type(tp: Any, value: Any) -> bool:
    """``value`` is what the stage may use as ``tp`` directly (no string numbers, no 0/1 for bools)."""
    optional, tp = _unwrap_optional(tp)
    if value is None:
        return optional or tp is Any
    if tp is Any:
        return True
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return _is_int(value)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if tp is str:
        return isinstance(value, (str, int, float)) and not isinstance(value, bool)
    if get_origin(tp) is list:
        (item,) = get_args(tp) or (Any,)
        return isinstance(value, list) and all(_strict_type(item, x) for x in value)
    return True


def _walk(cls: type, node: Any, prefix: str, problems: List[str]) -> None:
    """Strict types and ranges of every key of ``node`` (a plain, resolved mapping) that ``cls`` declares."""
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not isinstance(node, dict) or f.name not in node:
            continue
        key, value, tp = f"{prefix}{f.name}", node[f.name], hints[f.name]
        optional, inner = _unwrap_optional(tp)
        if dataclasses.is_dataclass(inner):
            if value is None and optional:
                continue
            if not isinstance(value, dict):
                problems.append(f"{key}={value!r}: expected {describe(tp)}")
                continue
            _walk(inner, value, key + ".", problems)
            continue
        if get_origin(inner) is dict:
            row_cls = get_args(inner)[1]
            if isinstance(value, dict):
                for name, row in value.items():
                    _walk(row_cls, row, f"{key}.{name}.", problems)
            continue
        check: Optional[Check] = f.metadata.get("check")
        ok = _strict_type(tp, value)
        if ok and check is not None and value is not None:
            try:
                ok = bool(check.ok(value))
            except TypeError:
                ok = False
        if not ok:
            problems.append(f"{key}={value!r}: expected {describe(tp, check)}")


def _get(plain: dict, path: str) -> Any:
    node: Any = plain
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return _ABSENT
        node = node[part]
    return node


def _field_at(path: str) -> Optional[tuple]:
    """(type, check, owner dataclass) of a dotted key of the composed config, or None."""
    cls, tp, check = Config, Config, None
    parts = path.replace("[", ".[").split(".")
    i = 0
    while i < len(parts):
        part = parts[i]
        _, inner = _unwrap_optional(tp)
        if part.startswith("["):  # a list item: report the list
            return tp, check, cls
        if get_origin(inner) is dict:
            tp, check = get_args(inner)[1], None
            i += 1
            continue
        if not dataclasses.is_dataclass(inner):
            return None
        cls = inner
        hints = get_type_hints(cls)
        found = {f.name: f for f in dataclasses.fields(cls)}.get(part)
        if found is None:
            return None
        tp, check = hints[part], found.metadata.get("check")
        i += 1
    return tp, check, cls


def _keys_of(path: str) -> List[str]:
    """The keys the schema declares beside ``path``'s last key."""
    parent = path.rpartition(".")[0]
    if not parent:
        return [f.name for f in dataclasses.fields(Config)]
    found = _field_at(parent)
    if found is None:
        return []
    _, inner = _unwrap_optional(found[0])
    return [f.name for f in dataclasses.fields(inner)] if dataclasses.is_dataclass(inner) else []


def _value_at(cfg: DictConfig, key: str) -> Any:
    try:
        return OmegaConf.select(cfg, key, throw_on_missing=False, throw_on_resolution_failure=False)
    except Exception:  # noqa: BLE001 - only for the message
        return "?"


def _explain(err: OmegaConfBaseException, cfg: DictConfig) -> str:
    """One line for an OmegaConf error: the full key, the value, what is allowed."""
    key = getattr(err, "full_key", None) or ""
    msg = (getattr(err, "msg", None) or str(err)).splitlines()[0]
    if isinstance(err, ConfigKeyError) and key:
        known = _keys_of(key)
        close = difflib.get_close_matches(key.rpartition(".")[2], known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"{key}: unknown key (no such key in the schema, zfnet/schema.py); known here: {known}{hint}"
    if isinstance(err, MissingMandatoryValue):
        return f"{key}: no value ('???'); set it in conf/ or on the command line"
    found = _field_at(key) if key else None
    if found is not None and any(t in msg for t in ("could not be converted", "Incompatible value", "is not a")):
        return f"{key}={_value_at(cfg, key.split('[')[0])!r}: expected {describe(found[0], found[1])}"
    return f"{key or '<root>'}: {msg}"


def validate(cfg: Any) -> Any:
    """Check every key of ``cfg`` against the schema; return ``cfg`` itself, or raise ``ConfigError``."""
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(cfg)
    original = cfg
    if "hydra" in cfg:  # a config composed with return_hydra_config: the hydra node is Hydra's own
        cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    try:
        plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as err:  # an interpolation to nowhere, a '???' left unset
        raise ConfigError([_explain(err, cfg)]) from None
    problems: List[str] = []
    _walk(Config, plain, "", problems)  # every wrong type or range at once, strictly
    try:  # the structured schema: keys in no dataclass (and any type the walk let through)
        OmegaConf.merge(_schema(), cfg)
    except OmegaConfBaseException as err:
        if isinstance(err, ConfigKeyError) or not problems:
            problems.append(_explain(err, cfg))
    if not problems:
        for (key, other), rule, expected in CROSS_CHECKS:
            a, b = _get(plain, key), _get(plain, other)
            if a is _ABSENT or b is _ABSENT:
                continue
            try:
                ok = rule(a, b)
            except TypeError:
                ok = False
            if not ok:
                shown = sorted(b) if isinstance(b, dict) else b
                problems.append(f"{key}={a!r}: " + expected.format(a, shown))
    if problems:
        raise ConfigError(problems)
    return original


_SCHEMA: Optional[DictConfig] = None


def _schema() -> DictConfig:
    """``OmegaConf.structured(Config)``, built once (merges copy it)."""
    global _SCHEMA
    if _SCHEMA is None:
        _SCHEMA = OmegaConf.structured(Config)
    return _SCHEMA


@contextmanager
def exit_on_config_error(status: int = 2) -> Iterator[None]:
    """For the pipelines' entry points: a ``ConfigError`` is one line on stderr and exit status 2 (Hydra's
    short-message convention), not a traceback. ``HYDRA_FULL_ERROR=1`` keeps the traceback."""
    import os

    try:
        yield
    except ConfigError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(str(err), file=sys.stderr, flush=True)
        sys.exit(status)


__all__ = ["Config", "ConfigError", "CROSS_CHECKS", "describe", "exit_on_config_error", "validate"]
