"""Check built distributions before anyone installs them: ``make wheels`` and ``make test-wheel`` run it.

A wheel must carry every module, the stub and the PEP 561 marker of ``python/matryo_fast``, the
compiled ``_core`` and the licence, and be tagged ``cp310-abi3``. Unless ``--any-platform`` is given
(for the wheel pip builds from the sdist on this machine), it must also be tagged ``manylinux2014``
in its name and judged ``manylinux_2_17`` (glibc 2.17) by ``auditwheel show``. An sdist must carry
every file that building needs (the crate, the lock file, the package, the licence). Exits 1 with
one line per problem.

Usage: ``python scripts/check_dist.py [--any-platform] WHEEL_OR_SDIST...``
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "python" / "matryo_fast"
# What pip needs to build the sdist, besides the package's own files.
SDIST_TOP = ["pyproject.toml", "Cargo.toml", "Cargo.lock", "LICENSE", "README.md", "rust/lib.rs"]
WHEEL_NAME = re.compile(r"^matryo_fast-[^-]+-cp310-abi3-(?P<platform>[^-]+)\.whl$")


def package_files() -> list[str]:
    """The package's source files (modules, stub, marker) as ``matryo_fast/...`` paths."""
    return sorted(
        "matryo_fast/" + p.relative_to(PACKAGE).as_posix()
        for p in PACKAGE.rglob("*")
        if p.is_file() and p.suffix in {".py", ".pyi", ".typed"}
    )


def missing_from_wheel(names: set[str]) -> list[str]:
    """What a wheel holding ``names`` lacks: package files or the compiled ``_core``."""
    missing = [f for f in package_files() if f not in names]
    # abi3 names the module _core.abi3.so on Linux and macOS, _core.pyd on Windows.
    if not names & {"matryo_fast/_core.abi3.so", "matryo_fast/_core.pyd"}:
        missing.append("matryo_fast/_core.abi3.so")
    if not any(n.endswith(".dist-info/licenses/LICENSE") for n in names):
        missing.append("matryo_fast-*.dist-info/licenses/LICENSE")
    return missing


def manylinux2014_problems(path: Path, platform: str) -> list[str]:
    """Problems with a wheel's Linux tag: its name and auditwheel must both say glibc 2.17."""
    tags = [p for p in platform.split(".") if p.startswith("manylinux2014_")]
    if not tags:
        return [f"{path.name}: no manylinux2014 platform tag (got {platform})"]
    arch = tags[0].removeprefix("manylinux2014_")
    shown = subprocess.run(
        [sys.executable, "-m", "auditwheel", "show", str(path)], capture_output=True, text=True
    )
    # auditwheel names the most compatible tag that the wheel's versioned symbols allow.
    want = f'consistent with the following platform tag:\n"manylinux_2_17_{arch}"'
    if shown.returncode != 0 or want not in shown.stdout:
        said = shown.stdout + shown.stderr
        return [f"{path.name}: auditwheel show does not confirm manylinux_2_17_{arch}:\n{said}"]
    return []


def check_wheel(path: Path, *, any_platform: bool) -> list[str]:
    """Problems with one wheel (empty when it is fit to ship)."""
    m = WHEEL_NAME.match(path.name)
    if m is None:
        return [f"{path.name}: not a cp310-abi3 wheel of matryo_fast"]
    with zipfile.ZipFile(path) as wheel:
        problems = [f"{path.name}: missing {f}" for f in missing_from_wheel(set(wheel.namelist()))]
    if not any_platform:
        problems += manylinux2014_problems(path, m["platform"])
    return problems


def check_sdist(path: Path) -> list[str]:
    """Problems with the sdist (empty when it holds what building a wheel needs)."""
    with tarfile.open(path) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    wanted = SDIST_TOP + ["python/" + f for f in package_files()]
    return [f"{path.name}: missing {f}" for f in wanted if f not in names]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    any_platform = "--any-platform" in args
    paths = [Path(a) for a in args if a != "--any-platform"]
    if not paths:
        print("usage: check_dist.py [--any-platform] WHEEL_OR_SDIST...", file=sys.stderr)
        return 2
    problems = []
    for path in paths:
        if path.name.endswith(".tar.gz"):
            found = check_sdist(path)
        else:
            found = check_wheel(path, any_platform=any_platform)
        problems += found
        if not found:
            print(f"check_dist: ok: {path.name}")
    for problem in problems:
        print(f"check_dist: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
