"""What `omni bento` puts in a bento beside the code: pinned requirements and the snapshot.

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

**The snapshot as a BentoML model.** :func:`store_snapshot` saves the snapshot folder in
BentoML's model store as ``omni_snapshot:<folder>-<manifest hash>`` (`bentoml models
list` shows it; storing the same snapshot again reuses it). The generated bentofile lists
that model, so the bento references it (``models`` in its bento.yaml) and `bentoml
containerize` carries it; the service, run from a built bento, loads the snapshot from
the model (:func:`bento_snapshot`).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

SNAPSHOT_MODEL = "omni_snapshot"
"""The BentoML model name of stored snapshots (its version names the snapshot)."""
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
MAX_TAG = 63
"""BentoML's longest tag name or version."""


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


def snapshot_version(path: Path) -> str:
    """The model version of the snapshot at ``path``: its folder name and the start of its
    manifest's SHA-256 (the manifest holds every file's), in BentoML's tag alphabet."""
    digest = hashlib.sha256((path / "manifest.json").read_bytes()).hexdigest()[:12]
    name = re.sub(r"[^a-z0-9._-]+", "-", path.name.lower()).strip("-._")
    return f"{name[: MAX_TAG - len(digest) - 1].rstrip('-._')}-{digest}" if name else digest


def store_snapshot(path: Path) -> tuple[str, bool]:
    """Save the snapshot folder at ``path`` in BentoML's model store, inside the model's
    folder under its own name; returns the model's tag and whether it is new (the same
    snapshot stored before is reused, not stored twice)."""
    import bentoml
    from bentoml.exceptions import NotFound

    from serving.online import read_manifest

    tag = f"{SNAPSHOT_MODEL}:{snapshot_version(path)}"
    try:
        return str(bentoml.models.get(tag).tag), False
    except NotFound:
        pass
    manifest = read_manifest(path)
    metadata = {
        "snapshot": path.name,
        "as_of": manifest.get("as_of"),
        "created": manifest.get("created"),
        "customers": manifest.get("customers"),
        "products": manifest.get("products"),
        "model_versions": {k: str(v.get("version")) for k, v in manifest["models"].items()},
    }
    metadata = {k: v for k, v in metadata.items() if v is not None}  # BentoML refuses None
    labels = {"project": "omni-personalize", "kind": "online-snapshot"}
    with bentoml.models.create(tag, labels=labels, metadata=metadata) as model:
        shutil.copytree(path, Path(model.path) / path.name)
    return tag, True


def write_bentofile(folder: Path, root: Path, lines: list[str], model: str) -> Path:
    """Write into ``folder`` ``root``'s bentofile.yaml with the pinned requirement
    ``lines`` as its packages and the snapshot ``model`` added, for `bentoml build -f`."""
    import yaml

    config = yaml.safe_load((root / "bentofile.yaml").read_text())
    config.setdefault("python", {})["packages"] = bento_requirements(lines)
    config["models"] = [model]
    target = folder / "bentofile.yaml"
    target.write_text(yaml.safe_dump(config, sort_keys=False))
    return target


def bento_snapshot(bento: Any) -> Path | None:
    """The snapshot in the ``omni_snapshot`` model that ``bento`` (the built bento the
    service runs from, or None) references; None when there is none."""
    if bento is None:
        return None
    for info in bento.info.all_models:
        if info.tag.name == SNAPSHOT_MODEL:
            import bentoml

            model = bentoml.models.get(info.tag)
            return Path(model.path) / model.info.metadata["snapshot"]
    return None
