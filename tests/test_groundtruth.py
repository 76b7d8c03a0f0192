"""Ground-truth coordinates follow the image through resize + centre crop + centre crop."""

import numpy as np
import torch
import torchvision.transforms.v2.functional as F

from zfnet.data.groundtruth import to_input


def test_a_marked_pixel_lands_where_to_input_says():
    for (w, h) in [(500, 375), (333, 500), (200, 200)]:
        x, y = w * 0.55, h * 0.45
        img = torch.zeros(1, h, w)
        img[0, int(y) - 2 : int(y) + 3, int(x) - 2 : int(x) + 3] = 1.0  # a 5x5 dot centred on (x, y)
        seen = F.center_crop(F.center_crop(F.resize(img, 128, antialias=True), 128), 112)[0]
        cy, cx = np.unravel_index(int(seen.argmax()), seen.shape)
        px, py = to_input(x, y, w, h, 128, 112)
        assert abs(px - (cx + 0.5)) < 1.5 and abs(py - (cy + 0.5)) < 1.5, (w, h, px, py, cx, cy)
