"""The package as pip installed it: version, console script, and, under ``make test-wheel``, the wheel.

``make test-wheel`` installs the built x86-64 wheel into a fresh virtual environment that has only
numpy and the test tools, sets ``MATRYO_FAST_TEST_INSTALLED=1`` and runs the whole suite from an
empty folder. The checks marked ``wheel_only`` then prove the suite tested that wheel (not the
source tree) and that the wheel carries every module, the stub and the ``py.typed`` marker.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import matryo_fast

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import check_dist  # noqa: E402

SOURCE = Path(__file__).resolve().parents[1] / "python" / "matryo_fast"
wheel_only = pytest.mark.skipif(
    os.environ.get("MATRYO_FAST_TEST_INSTALLED") != "1",
    reason="checks the installed wheel; `make test-wheel` runs it (this run imports the editable build)",
)


def test_version_is_the_distribution_version() -> None:
    # __version__ comes from Cargo.toml through the compiled module, the metadata from pyproject.toml.
    assert matryo_fast.__version__ == importlib.metadata.version("matryo-fast")


def test_console_script_prints_the_version() -> None:
    script = Path(sysconfig.get_path("scripts")) / "matryo"
    out = subprocess.run([script, "--version"], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == f"matryo {matryo_fast.__version__}"


@wheel_only
def test_package_is_imported_from_the_virtual_environment() -> None:
    package = Path(matryo_fast.__file__).resolve().parent
    assert sys.prefix != sys.base_prefix, "not running in a virtual environment"
    assert package.is_relative_to(Path(sys.prefix).resolve()), f"imported from {package}, not {sys.prefix}"
    assert not package.is_relative_to(SOURCE.parent), f"imported the source tree {package}"


@wheel_only
def test_wheel_ships_every_module_the_stub_and_the_marker() -> None:
    shipped = {f.as_posix() for f in importlib.metadata.files("matryo-fast") or []}
    assert check_dist.missing_from_wheel(shipped) == []
    assert (Path(matryo_fast.__file__).parent / "py.typed").is_file()


def test_wheel_check_names_a_missing_marker_stub_and_module() -> None:
    wanted = check_dist.package_files()
    dropped = {"matryo_fast/py.typed", "matryo_fast/_core.pyi", "matryo_fast/search.py"}
    licence = "matryo_fast-1.2.3.dist-info/licenses/LICENSE"
    names = set(wanted) - dropped | {"matryo_fast/_core.abi3.so", licence}
    assert sorted(check_dist.missing_from_wheel(names)) == sorted(dropped)
    assert check_dist.missing_from_wheel(set(wanted) | {licence}) == ["matryo_fast/_core.abi3.so"]
    assert check_dist.missing_from_wheel(set(wanted) | {"matryo_fast/_core.pyd"}) == [
        "matryo_fast-*.dist-info/licenses/LICENSE"
    ]


def test_changelog_has_an_entry_for_this_version() -> None:
    changelog = Path(__file__).resolve().parents[1] / "CHANGELOG.md"
    assert f"## [{matryo_fast.__version__}]" in changelog.read_text(encoding="utf-8")
