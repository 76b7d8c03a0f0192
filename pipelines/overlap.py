"""DVC stage `overlap`: see zfnet.stages.overlap. Usage: python pipelines/overlap.py [hydra overrides]"""

import hydra
from omegaconf import DictConfig

from zfnet.schema import exit_on_config_error
from zfnet.stages.overlap import run


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    with exit_on_config_error():  # a bad config value: one line naming the key, exit status 2
        run(cfg)


if __name__ == "__main__":
    main()
