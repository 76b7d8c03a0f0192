"""DVC stage `table3`: see zfnet.stages.table3. Usage: python pipelines/table3.py [hydra overrides]"""

import hydra
from omegaconf import DictConfig

from zfnet.stages.table3 import run


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
