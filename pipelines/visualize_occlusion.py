"""DVC stage `visualize_occlusion`: Fig. 7 and occlusion/boxes.json (zfnet.stages.visualize.occlusion).
Usage: python pipelines/visualize_occlusion.py [hydra overrides]"""

import hydra
from omegaconf import DictConfig

from zfnet.schema import exit_on_config_error
from zfnet.signals import terminate_gracefully
from zfnet.stages.visualize import run
from zfnet.stages.visualize import occlusion


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    # a bad config value: one line naming the key, exit status 2; SIGTERM ends the stage as Ctrl-C would
    with exit_on_config_error(), terminate_gracefully():
        run(cfg, [occlusion])


if __name__ == "__main__":
    main()
