"""DVC stage `visualize_synthesis`: network-centric synthesis beside Fig. 2's maps (zfnet.stages.visualize.synthesis).
Usage: python pipelines/visualize_synthesis.py [hydra overrides]"""

import hydra
from omegaconf import DictConfig

from zfnet.schema import exit_on_config_error
from zfnet.signals import terminate_gracefully
from zfnet.stages.visualize import run
from zfnet.stages.visualize import synthesis


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    # a bad config value: one line naming the key, exit status 2; SIGTERM ends the stage as Ctrl-C would
    with exit_on_config_error(), terminate_gracefully():
        run(cfg, [synthesis])


if __name__ == "__main__":
    main()
