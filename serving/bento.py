"""What `omni bento` puts in a bento beside the code: requirements pinned to uv.lock.

**Requirements pinned to uv.lock.** The ``bento`` dependency group (pyproject.toml) names
what the service imports; ``uv export --frozen`` of that group writes the exact versions
uv.lock pins for it and for everything it needs, offline (the lock is read, nothing is
resolved), with uv's markers where the lock has one version per Python. The generated
bentofile hands them to `bentoml build` as its ``python.packages`` (a requirements file
would have to sit in the source tree), so a bento built today installs the same numpy,
LightGBM, implicit and scikit-learn that unpickle its models next year (BentoML's own
``Image.uv_lock()`` would export every dependency, MLflow and matplotlib too). BentoML
adds its own ``bentoml==`` pin (the installed version), so the export's is left out;
:func:`lock_drift` names installed versions that differ from the lock's (the snapshot's
pickles were written by the installed ones).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

REQUIREMENTS_GROUP = "bento"
"""The dependency group in pyproject.toml that a built bento installs."""
EXPORT = (
    "export",
    "--frozen",
    "--offline",
    "--no-hashes",
    "--no-header",
    "--no-annotate",
    "--no-emit-project",
    "--only-group",
    REQUIREMENTS_GROUP,
)
"""`uv export` of the group at the lock's versions (the project itself is the bento's code)."""
NO_TRACKING = {"BENTOML_DO_NOT_TRACK": "True"}
"""BentoML sends usage events unless told not to: `omni bento` does not."""


class BentoError(Exception):
    """A bento cannot be built as asked (the message says why)."""


def uv_binary() -> str:
    """uv from the installed ``uv`` package (a dependency), else from PATH."""
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found is None:
            raise BentoError("uv is not installed: `pip install uv` (it reads uv.lock)") from None
        return found


def pinned_requirements(root: Path) -> list[str]:
    """The requirement lines (``name==version``, maybe with a marker) uv.lock pins for the
    ``bento`` group and its dependencies, read from the lock in ``root``."""
    if not (root / "uv.lock").exists():
        raise BentoError(f"no uv.lock in {root}: the bento pins its versions (run `uv lock`)")
    out = subprocess.run(
        [uv_binary(), *EXPORT], cwd=root, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        reason = out.stderr.strip().splitlines()[-1:] or [f"exit status {out.returncode}"]
        raise BentoError(f"uv export of the locked requirements failed: {reason[0]}")
    return [line for line in out.stdout.splitlines() if line and not line.startswith("#")]


def lock_drift(lines: list[str]) -> list[str]:
    """``name installed (uv.lock: version)`` for each pinned package (of this Python) whose
    installed version differs from the lock's."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import Requirement
    from packaging.version import Version

    drift = []
    for line in lines:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate():
            continue
        locked = next(iter(req.specifier)).version
        try:
            installed = version(req.name)
        except PackageNotFoundError:
            installed = "not installed"
        else:
            if Version(installed) == Version(locked):
                continue
        drift.append(f"{req.name} {installed} (uv.lock: {locked})")
    return drift


def bento_requirements(lines: list[str]) -> list[str]:
    """The pins `bentoml build` is given: all but bentoml's own (BentoML adds that)."""
    return [line for line in lines if not re.match(r"bentoml\s*==", line, re.IGNORECASE)]


def write_bentofile(folder: Path, root: Path, lines: list[str]) -> Path:
    """Write into ``folder`` ``root``'s bentofile.yaml with the pinned requirement
    ``lines`` as its packages, for `bentoml build -f`."""
    import yaml

    config = yaml.safe_load((root / "bentofile.yaml").read_text())
    config.setdefault("python", {})["packages"] = bento_requirements(lines)
    target = folder / "bentofile.yaml"
    target.write_text(yaml.safe_dump(config, sort_keys=False))
    return target
