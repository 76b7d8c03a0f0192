"""DVC stage `train`: see zfnet.stages.train. Usage: python pipelines/train.py [hydra overrides]"""

import hydra
from omegaconf import DictConfig

from zfnet.stages.train import run


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
