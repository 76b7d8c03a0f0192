"""DVC stage `atlas`: every unit of the chosen layers, every method side by side, as static pages under
reports/atlas and W&B tables (zfnet.stages.atlas).
Usage: python pipelines/atlas.py [hydra overrides]
  your own CNN: python pipelines/atlas.py visualize.model=torchvision:resnet18 visualize.weights=w.pt
                visualize.image_folder=photos atlas.layers=[layer1,layer4]"""

import hydra
from omegaconf import DictConfig

from zfnet.schema import exit_on_config_error
from zfnet.signals import terminate_gracefully
from zfnet.stages.atlas import run


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    # a bad config value: one line naming the key, exit status 2; SIGTERM ends the stage as Ctrl-C would
    with exit_on_config_error(), terminate_gracefully():
        run(cfg)


if __name__ == "__main__":
    main()
