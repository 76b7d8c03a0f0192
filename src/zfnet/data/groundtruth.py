"""Ground truth of a dataset (boxes, part landmarks) carried into the coordinates the network sees.

The pipeline's own logic never reads ground truth; evaluation and the analyses that need it (the
correspondence study's eye and nose positions, the object boxes of occlusion figures: the demo's table,
or a real ImageNet's boxes read by ``zfnet.data.imagenet_boxes``) do, through here.
An image is seen as: smallest side -> ``resize`` (centre crop resize × resize), then the centre
``crop`` × ``crop``; ``to_input`` maps original pixel coordinates through both steps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from zfnet.data.preprocess import resized_size

PARTS = {"right_eye": ("right_eye_x", "right_eye_y"), "left_eye": ("left_eye_x", "left_eye_y"), "nose": ("nose_x", "nose_y")}


def to_input(x, y, width: int, height: int, resize: int, crop: int) -> tuple[np.ndarray, np.ndarray]:
    """Original (x, y) (continuous pixel coordinates) -> coordinates in the centre crop (vectorized)."""
    sizes = np.array([resized_size(int(a), int(b), resize) for a, b in zip(np.ravel(width), np.ravel(height))])
    w, h = sizes[:, 0].reshape(np.shape(width)), sizes[:, 1].reshape(np.shape(height))
    sx, sy = w / np.asarray(width), h / np.asarray(height)
    left, top = np.round((w - resize) / 2.0), np.round((h - resize) / 2.0)  # same as int(round()) here
    inner = int(round((resize - crop) / 2.0))
    return np.asarray(x) * sx - left - inner, np.asarray(y) * sy - top - inner


def imagenet_table(demo_root: str | Path) -> pd.DataFrame:
    path = Path(demo_root) / "ground_truth" / "imagenet.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ground truth not found (written by the demo_data stage)")
    return pd.read_csv(path)


LANDMARK_COLUMNS = ("ImageId", "part", "x", "y")


def read_landmarks(path: str | Path) -> pd.DataFrame:
    """Part landmarks of validation images (Table 1's correspondence study) from a CSV with the columns
    ``ImageId,part,x,y``: the image's file name without suffix (ImageNet's ``ILSVRC2012_val_00000001``, as in
    ``LOC_val_solution.csv``), a part name (any: ``left_eye``, ``nose``, ...), and the landmark in the original
    image's pixel coordinates. Real ImageNet has no landmarks: a user who wants Table 1 writes this file."""
    path = Path(path)
    table = pd.read_csv(path, dtype={"ImageId": str, "part": str})
    missing = [c for c in LANDMARK_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: expected the columns {','.join(LANDMARK_COLUMNS)}; missing {', '.join(missing)}")
    bad = table[pd.to_numeric(table.x, errors="coerce").isna() | pd.to_numeric(table.y, errors="coerce").isna()]
    if len(bad):
        raise ValueError(f"{path}: x and y must be numbers (row {int(bad.index[0]) + 2}: {bad.iloc[0].to_dict()})")
    return table.astype({"x": float, "y": float})


def landmarks(table: pd.DataFrame, resize: int, crop: int) -> dict[str, np.ndarray]:
    """Per part, (N, 2) xy in input coordinates for the rows of ``table`` (rows with landmarks only)."""
    out = {}
    for part, (cx, cy) in PARTS.items():
        x, y = to_input(table[cx].to_numpy(float), table[cy].to_numpy(float), table.width.to_numpy(),
                        table.height.to_numpy(), resize, crop)
        out[part] = np.stack([x, y], axis=1)
    return out


def boxes(table: pd.DataFrame, resize: int, crop: int) -> np.ndarray:
    """(N, 4) xmin, ymin, xmax, ymax in input coordinates (inclusive pixel indices -> edges)."""
    x0, y0 = to_input(table.xmin.to_numpy(float), table.ymin.to_numpy(float), table.width.to_numpy(), table.height.to_numpy(), resize, crop)
    x1, y1 = to_input(table.xmax.to_numpy(float) + 1, table.ymax.to_numpy(float) + 1, table.width.to_numpy(), table.height.to_numpy(), resize, crop)
    return np.stack([x0, y0, x1, y1], axis=1)


def input_boxes(corners: np.ndarray, width: int, height: int, resize: int, crop: int) -> np.ndarray:
    """One image's boxes, (K, 4) inclusive pixel indices of its ``width`` x ``height`` original, as ``boxes``
    maps a table's: (K, 4) edges in input coordinates."""
    table = pd.DataFrame(np.asarray(corners, float).reshape(-1, 4), columns=["xmin", "ymin", "xmax", "ymax"])
    return boxes(table.assign(width=int(width), height=int(height)), resize, crop)
