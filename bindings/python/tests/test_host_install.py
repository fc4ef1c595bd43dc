"""``pip install ./bindings/python`` in a fresh venv gives both ``clove`` and ``clove_sdk``, and the
installed ``clove`` finds libclove in the documented order: ``$CLOVE_LIB``, the copy bundled in
the package, the system's search; with none it names every place it looked.

pip fetches the build backend (setuptools) from PyPI, as for any user.
"""

import ctypes.util
import os
import shutil
import subprocess
import sys

import pytest

from test_host_support import PYTHON_DIR

# The fixtures clove_lib and rt.
pytest_plugins = ["test_host_support"]

SMOKE = """\
import clove, clove_sdk
from clove import _lib
with clove.Runtime() as rt:
    code = rt.spawn("smoke", ["sh", "-c", "exit 7"]).wait(20).code
print(clove.__file__, clove_sdk.__file__, _lib.load()._name, code)
"""
FAIL = """\
import clove
try:
    clove.Runtime()
except clove.LibraryError as error:
    print(error)
"""


@pytest.fixture(scope="module")
def venv(clove_lib, tmp_path_factory):
    """A venv holding ``clove`` installed with a bundled libclove.so, and its site-packages."""
    root = tmp_path_factory.mktemp("install")
    # Installed from a copy with the library bundled, so the source tree gets no build files.
    source = root / "source"
    shutil.copytree(PYTHON_DIR, source, ignore=shutil.ignore_patterns(
        "tests", "build", "*.egg-info", "__pycache__", ".pytest_cache"))
    shutil.copy(clove_lib, source / "clove" / "libclove.so")
    subprocess.run([sys.executable, "-m", "venv", root / "venv"], check=True)
    python = root / "venv" / "bin" / "python"
    pip = subprocess.run([python, "-m", "pip", "install", "-q", source], capture_output=True,
                         text=True)
    assert pip.returncode == 0, f"pip install failed:\n{pip.stderr}"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    return python, site


def run(venv, script, **env):
    """Runs ``script`` in the venv, away from the source tree and from any library path."""
    python, _ = venv
    clean = {k: v for k, v in os.environ.items()
             if k not in ("PYTHONPATH", "CLOVE_LIB", "LD_LIBRARY_PATH")}
    done = subprocess.run([python, "-c", script], env={**clean, **env}, capture_output=True,
                          text=True, cwd="/")
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_both_packages_install_and_clove_lib_comes_first(venv, clove_lib):
    _, site = venv
    clove_file, sdk_file, library, code = run(venv, SMOKE, CLOVE_LIB=clove_lib)
    assert clove_file == f"{site}/clove/__init__.py"
    assert sdk_file == f"{site}/clove_sdk/__init__.py"
    assert (library, code) == (clove_lib, "7")


def test_the_bundled_library_is_found_without_clove_lib(venv):
    _, site = venv
    *_, library, code = run(venv, SMOKE)
    assert (library, code) == (f"{site}/clove/libclove.so", "7")


def test_a_missing_library_names_every_place_searched(venv, tmp_path):
    _, site = venv
    missing = tmp_path / "missing.so"
    message = " ".join(run(venv, FAIL, CLOVE_LIB=str(missing)))
    assert message.startswith(f"CLOVE_LIB={missing} cannot be loaded"), "no silent fallback"
    if ctypes.util.find_library("clove"):
        pytest.skip("SKIPPED: a libclove is installed system-wide, so the search cannot fail")
    bundled = f"{site}/clove/libclove.so"
    os.rename(bundled, bundled + ".aside")
    try:
        message = " ".join(run(venv, FAIL))
    finally:
        os.rename(bundled + ".aside", bundled)
    for place in ("CLOVE_LIB (unset)", f"{bundled} (absent)", 'find_library("clove")',
                  "dynamic loader"):
        assert place in message, message
