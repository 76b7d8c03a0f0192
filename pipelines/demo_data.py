"""DVC stage `demo_data`: see zfnet.stages.demo_data. Usage: python pipelines/demo_data.py [hydra overrides]"""

import hydra
from omegaconf import DictConfig

from zfnet.stages.demo_data import run


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
