"""One source of configuration: ``conf/`` composed by Hydra into ``params.yaml``.

``params.yaml`` is written exactly as ``dvc exp run`` writes it (DVC's own ``compose_and_dump``), so
``dvc repro`` and ``dvc exp run`` see the same parameters. Run ``make params`` (``python -m zfnet.config``)
after editing ``conf/``; a test fails when the two disagree.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def compose_params(output: str | Path, conf_dir: str | Path | None = None, overrides: list[str] | None = None) -> Path:
    """Compose ``conf/config.yaml`` into ``output`` with DVC's Hydra composition (atomic write)."""
    from dvc.utils.hydra import compose_and_dump

    conf_dir = Path(conf_dir or REPO_ROOT / "conf").resolve()
    if not (conf_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{conf_dir / 'config.yaml'}: Hydra primary config not found")
    output = Path(output)
    fd, tmp = tempfile.mkstemp(prefix=output.name, suffix=".yaml", dir=output.parent or ".")
    os.close(fd)
    try:
        compose_and_dump(tmp, str(conf_dir), None, "config", str(conf_dir.parent), list(overrides or []))
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return output


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO_ROOT / "params.yaml"))
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. profile=paper")
    args = parser.parse_args(argv)
    print(compose_params(args.out, overrides=args.overrides))


if __name__ == "__main__":
    main()
