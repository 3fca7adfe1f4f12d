import json
import subprocess
import sys
from pathlib import Path

import pytest

import sighost_handler
from sighost_handler.build import COMPONENTIZE_PY

# The repository's shared cases, which every SDK and the host run.
CASES = Path(__file__).resolve().parents[3] / "wit" / "cases"
WIT = Path(__file__).resolve().parents[3] / "wit"

# Modules the generated bindings (and the glue importing them) add; removed
# after each test that loads them, so that the tests that need the SDK to run
# without bindings still see it that way, whatever the order.
_BINDING_MODULES = ("wit_world", "componentize_py_types", "componentize_py_async_support",
                    "sighost_handler._guest", "sighost_entry")


def load_cases(name):
    return json.loads((CASES / name).read_text())["cases"]


@pytest.fixture
def bindings(tmp_path, monkeypatch):
    """Generates the real componentize-py bindings of a world into a scratch
    directory and puts them on sys.path: `bindings("tenant-handler")`. The
    glue is then tested against the very classes the component uses."""

    def generate(world):
        out = tmp_path / world
        subprocess.run(
            [*COMPONENTIZE_PY, "-d", str(WIT), "-w", world, "bindings", str(out)],
            check=True, capture_output=True,
        )
        monkeypatch.syspath_prepend(str(out))
        return out

    yield generate
    for name in list(sys.modules):
        if name.split(".")[0] in _BINDING_MODULES or name in _BINDING_MODULES:
            del sys.modules[name]
    # The package keeps its submodules as attributes too.
    vars(sighost_handler).pop("_guest", None)


@pytest.fixture(scope="session", autouse=True)
def _componentize_py_is_installed():
    # The glue and build tests need componentize-py; it is pinned in
    # requirements-dev.txt beside pytest, so its absence is a set-up error,
    # not a reason to skip.
    try:
        import componentize_py  # noqa: F401
    except ImportError:
        pytest.exit("componentize-py is not installed: pip install -r sdk/python/requirements-dev.txt", 2)
