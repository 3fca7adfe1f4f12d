"""The build's decisions, short of running componentize-py: which module,
which function, which world, which name, what gets staged."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sighost_handler import _project
from sighost_handler.build import Entry, find_handler, locate_app, stage

EXAMPLE = Path(__file__).resolve().parents[3] / "handlers" / "forum-summarizer-py"

HANDLER = """\
from sighost_handler import handler

@handler
def handle(signal, context):
    pass
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A handler project in a scratch directory; modules it imports are
    forgotten afterwards so each test imports its own."""
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "probe-handler"\n')
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]


def test_the_example_builds_as_a_tenant_handler_named_by_its_project():
    app = locate_app(EXAMPLE)
    assert (app.module, app.root) == ("forum_summarizer", EXAMPLE)
    assert _project.project_name(app.source) == "forum-summarizer-py"
    assert find_handler(app) == ("handle_signal", "tenant-handler")


def test_a_file_a_package_and_a_project_directory_locate_the_module(project):
    (project / "probe_one.py").write_text(HANDLER)
    (project / "test_probe_one.py").write_text("")
    (project / "conftest.py").write_text("")
    (project / "pkg").mkdir()
    (project / "pkg" / "__init__.py").write_text("from .inner import handle\n")
    (project / "pkg" / "inner.py").write_text(HANDLER)

    assert locate_app(project / "probe_one.py").module == "probe_one"
    assert locate_app(project).module == "probe_one", "tests and conftest are not the handler"
    package = locate_app(project / "pkg")
    assert (package.module, package.root) == ("pkg", project)
    assert find_handler(package) == ("handle", "context-handler")
    assert _project.project_name(package.source) == "probe-handler", "the nearest pyproject above"


def test_a_project_directory_with_two_modules_must_name_one(project):
    (project / "a.py").write_text(HANDLER)
    (project / "b.py").write_text(HANDLER)
    with pytest.raises(SystemExit, match="holds 2 modules"):
        locate_app(project)


@pytest.mark.parametrize("source, count", [
    ("x = 1\n", 0),
    (HANDLER + "\n@handler\ndef other(signal):\n    pass\n", 2),
])
def test_the_module_must_define_exactly_one_handler(project, source, count):
    (project / "probe_count.py").write_text(source)
    with pytest.raises(SystemExit, match=f"it has {count}"):
        find_handler(locate_app(project / "probe_count.py"))


def test_a_project_without_a_name_is_refused(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.other]\n")
    with pytest.raises(ValueError, match="no \\[project\\] name"):
        _project.project_name(tmp_path / "h.py")


def test_staging_holds_the_module_the_runtime_sdk_and_the_entry(project, tmp_path_factory):
    (project / "probe_stage.py").write_text(HANDLER)
    (project / "test_probe_stage.py").write_text("")
    out = tmp_path_factory.mktemp("stage")
    stage(locate_app(project), Entry("probe-handler", "probe_stage", "handle", "context-handler"), out)
    staged = sorted(str(p.relative_to(out)) for p in out.rglob("*.py"))
    assert staged == [
        "probe_stage.py",
        "sighost_entry.py",
        "sighost_handler/__init__.py",
        "sighost_handler/_guest.py",
        "sighost_handler/directive.py",
        "sighost_handler/handler.py",
        "sighost_handler/types.py",
    ]
    assert "def handle_signal(self, signal, context):" in (out / "sighost_entry.py").read_text()


def test_an_older_python_is_told_the_version_the_build_needs(tmp_path):
    # Python 3.10 played by this one: the build must stop with a sentence
    # before anything reads pyproject.toml (tomllib is 3.11's).
    pretend = (
        "import runpy, sys; sys.version_info = (3, 10, 14, 'final', 0); "
        "runpy.run_module('sighost_handler.build', run_name='__main__')"
    )
    done = subprocess.run(
        [sys.executable, "-c", pretend, str(EXAMPLE), "-o", str(tmp_path / "x.wasm"),
         "--wit", str(tmp_path)],
        capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert done.returncode == 1
    assert done.stderr == (
        f"sighost_handler needs Python 3.11 or newer; {sys.executable} is Python 3.10\n"
    )
    assert not (tmp_path / "x.wasm").exists()


def test_the_sdk_requires_the_python_the_build_checks():
    import tomllib

    from sighost_handler.build import REQUIRES_PYTHON

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert pyproject["project"]["requires-python"] == ">=%d.%d" % REQUIRES_PYTHON
