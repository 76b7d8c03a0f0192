"""Where a run's code came from: the git revision of the checkout, and whether it differs from the commit.

One home for the git calls the report (``git_state``: revision, dirty files, experiment params) and W&B
tracking (``git_revision``: the short commit in a run's group and config) share.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path


def git(args: Sequence[str], cwd: str | Path | None = None) -> str | None:
    """``git <args>``'s standard output, None when git is missing, fails or takes over 10 s."""
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, cwd=cwd)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def git_revision(cwd: str | Path | None = None) -> str | None:
    """The short commit of the checkout holding ``cwd``; None outside a git checkout."""
    return (git(["rev-parse", "--short", "HEAD"], cwd) or "").strip() or None


def dvc_outputs(top: Path) -> set[str]:
    """The paths the pipeline's stages write (``outs`` of ``dvc.lock``), relative to the repository root."""
    import yaml

    try:
        lock = yaml.safe_load((top / "dvc.lock").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return set()
    return {str(Path(o["path"]).as_posix()).rstrip("/") for stage in (lock.get("stages") or {}).values()
            if isinstance(stage, dict) for o in stage.get("outs") or [] if isinstance(o, dict) and o.get("path")}


def _flat(tree, prefix: str = "") -> dict[str, object]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    return {k: v for key, sub in tree.items() for k, v in _flat(sub, f"{prefix}.{key}" if prefix else str(key)).items()}


def _changed(cwd) -> list[str]:
    """Tracked files that differ from the commit (``git status``; a rename's old path left out)."""
    entries = (git(["status", "--porcelain=v1", "-z", "--untracked-files=no"], cwd) or "").split("\0")
    changed, skip = [], False
    for entry in entries:
        if skip or len(entry) < 4:
            skip = False
            continue
        changed.append(entry[3:])
        skip = "R" in entry[:2] or "C" in entry[:2]  # a rename's or copy's next entry is its old path
    return changed


def _experiment_params(top: str, rev: str) -> str:
    """What ``params.yaml`` changes against the commit: ``key=value`` for each key (12 at most)."""
    import yaml

    try:
        before = _flat(yaml.safe_load(git(["show", "HEAD:params.yaml"], top) or "") or {})
        now = _flat(yaml.safe_load((Path(top) / "params.yaml").read_text()) or {})
        keys = sorted(k for k in before.keys() | now.keys() if before.get(k, "<unset>") != now.get(k, "<unset>"))
        what = ", ".join(f"{k}={now.get(k, '<unset>')}" for k in keys[:12]) + (", …" if len(keys) > 12 else "")
    except (OSError, yaml.YAMLError):
        what = ""
    return f"params.yaml differs from {rev} (an experiment, e.g. dvc exp run -S)" + (f": {what}" if what else "")


def git_state(cwd: str | Path | None = None) -> dict[str, str]:
    """``git revision``: the short commit, ``+dirty`` (naming the files) only when tracked files other than
    what the pipeline writes differ from it; the pipeline's own writes are not source changes: ``dvc.lock``,
    the ``.gitignore`` files DVC keeps, the stages' outputs, and ``params.yaml``, which ``dvc exp run -S``
    rewrites: when it differs from the commit, ``experiment params`` names the changed keys."""
    rev = git_revision(cwd) or ""
    top = (git(["rev-parse", "--show-toplevel"], cwd) or "").strip()
    if not rev or not top:
        return {"git revision": "unknown (not a git checkout with a commit)"}
    changed = _changed(cwd)
    outs = dvc_outputs(Path(top))

    def written_by_pipeline(path: str) -> bool:
        return (path == "dvc.lock" or Path(path).name == ".gitignore"
                or any(path == o or path.startswith(o + "/") for o in outs))

    dirty = [p for p in changed if p != "params.yaml" and not written_by_pipeline(p)]
    state = {"git revision": rev + (f"+dirty ({', '.join(dirty[:5])}{', …' if len(dirty) > 5 else ''} differ from "
                                    f"the commit)" if dirty else "")}
    if "params.yaml" in changed:
        state["experiment params"] = _experiment_params(top, rev)
    return state
