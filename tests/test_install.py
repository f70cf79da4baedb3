"""A regular (non-editable) install works too, installs no generic import names, and ships every
package and task file that the source tree holds, found without a hand-kept list (see setup.py).

The suite itself runs on the editable install that ``make`` creates; here the wheel goes into a
scratch environment that borrows the test environment's dependencies.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow

CHECK = """
import importlib.util, json
import lm_eval_speech, lm_eval_speech.models.qwen2_audio as q
# the wheel holds the call layer, the judging protocols, speech I/O and the report
import lm_eval_speech.calls.caller, lm_eval_speech.calls.preflight, lm_eval_speech.judging.tasks
import lm_eval_speech.speech.output, lm_eval_speech.provenance, lm_eval_speech.outcomes, lm_eval_speech.report
import lm_eval_speech.tasks.speechinstruct.judge_prompts
assert importlib.util.find_spec("lm_eval_speech.tasks.speechinstruct.judged") is not None
from lm_eval.api.registry import get_model
from lm_eval.tasks import TaskManager
index = TaskManager(include_defaults=False).task_index
print(json.dumps({
    "package": lm_eval_speech.__file__,
    "model_module": q.__file__,
    "generic_names": [n for n in ("models", "speech_tasks", "tasks", "utils") if importlib.util.find_spec(n)],
    "tasks": sorted(n for n in index if n.startswith(("speechinstruct", "jasco"))),
    "task_yaml": str(index["speechinstruct_close_en_standard"].yaml_path),
    "models": [get_model(n).__name__ for n in ("hf", "qwen2_audio", "responses", "cascade")],
}))
"""


# source folder -> installed package folder (setup.py's PACKAGE_DIR, as paths)
ROOTS = {"lm_eval_speech": "lm_eval_speech", "models": "lm_eval_speech/models", "speech_tasks": "lm_eval_speech/tasks"}
TASK_DATA = ("*.yaml", "_*_yaml", "README.md")  # the package-data globs in pyproject.toml


def expected_files(source: Path) -> set[str]:
    """What the wheel must hold under lm_eval_speech/, read off a source tree."""
    expected = set()
    for folder, installed in ROOTS.items():
        root = source / folder
        found = set(root.rglob("*.py"))
        if folder == "speech_tasks":
            found.update(f for pattern in TASK_DATA for f in root.rglob(pattern))
        expected.update(f"{installed}/{f.relative_to(root).as_posix()}" for f in found
                        if f.is_file() and "__pycache__" not in f.parts)
    return expected


def build_wheel(source: Path, out: Path) -> Path:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(source)],
        capture_output=True, text=True, timeout=600,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    [wheel] = list(out.glob("lm_eval_speech-*.whl"))
    return wheel


def assert_ships_exactly(wheel: Path, source: Path) -> set[str]:
    """The wheel holds the source tree's packages and task data at their mapped paths, and nothing else."""
    with zipfile.ZipFile(wheel) as archive:
        names = {n for n in archive.namelist() if not n.endswith("/")}
    dist_info = {n for n in names if n.split("/")[0].endswith(".dist-info")}
    assert {n.split("/")[0] for n in dist_info} == {wheel.name.split("-py")[0] + ".dist-info"}
    shipped = names - dist_info - {"lm_eval_speech.pth"}
    expected = expected_files(source)
    assert not expected - shipped, f"missing from the wheel: {sorted(expected - shipped)}"
    assert not shipped - expected, f"not in the source tree: {sorted(shipped - expected)}"
    assert "lm_eval_speech.pth" in names
    return shipped


def test_wheel_install(tmp_path):
    # the only build of the checkout itself (in place, as `pip wheel .` does); the others use copies
    wheel = build_wheel(REPO, tmp_path / "wheels")
    shipped = assert_ships_exactly(wheel, REPO)
    assert {"lm_eval_speech/__init__.py", "lm_eval_speech/models/qwen2_audio.py",
            "lm_eval_speech/tasks/speechinstruct/utils.py", "lm_eval_speech/tasks/jasco/jasco.yaml",
            "lm_eval_speech/tasks/speechinstruct/_closed_template_yaml", "lm_eval_speech/calls/__init__.py",
            "lm_eval_speech/calls/preflight.py", "lm_eval_speech/judging/tasks.py", "lm_eval_speech/speech/output.py",
            "lm_eval_speech/provenance.py", "lm_eval_speech/run.py"} <= shipped
    # the layout before the redesign is gone (a stale build folder must not bring it back)
    assert not {n for n in shipped if n.startswith(("lm_eval_speech/judge/", "lm_eval_speech/audio.py", "lm_eval_speech/text_lm.py"))}

    scratch = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(scratch)], check=True, timeout=120)
    python = scratch / "bin" / "python"
    where = [str(python), "-c", "import site; print(site.getsitepackages()[0])"]
    site = Path(subprocess.run(where, capture_output=True, text=True, check=True).stdout.strip())
    # A plain path line: the test environment's packages become importable, its .pth files stay inert.
    (site / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(site), str(wheel)],
        capture_output=True, text=True, timeout=600,
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    assert (site / "lm_eval_speech.pth").is_file()

    done = subprocess.run([str(python), "-c", CHECK], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    import json

    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["package"].startswith(str(site)) and found["model_module"].startswith(str(site))
    assert found["generic_names"] == []
    assert len(found["tasks"]) == 18  # 15 tasks + 3 groups
    assert "jasco" in found["tasks"]
    assert found["task_yaml"].startswith(str(site / "lm_eval_speech" / "tasks"))
    assert found["models"] == ["HFLM", "Qwen2AudioLM", "ResponsesLM", "CascadeLM"]


def copy_checkout(dest: Path) -> Path:
    """The project's files (tracked, plus new ones git does not ignore), never its build outputs."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, check=True, timeout=60).stdout.decode()
    for name in filter(None, listed.split("\0")):
        src = REPO / name
        if src.is_file():  # a tracked file being moved away is absent
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def test_new_folders_ship_without_editing_a_list(tmp_path):
    tree = copy_checkout(tmp_path / "src")
    probe = tree / "speech_tasks" / "zz_probe_task"
    files = {
        "speech_tasks/zz_probe_task/__init__.py": "",
        "speech_tasks/zz_probe_task/utils.py": "def process_docs(dataset):\n    return dataset\n",
        "speech_tasks/zz_probe_task/zz_probe.yaml": "task: zz_probe\ninclude: _x_yaml\n",
        "speech_tasks/zz_probe_task/_x_yaml": "output_type: generate_until\n",
        "speech_tasks/zz_probe_task/README.md": "# probe\n",
        # a namespace folder (no __init__.py, like the existing task folders), two levels down
        "speech_tasks/zz_probe_task/deep/er/helpers.py": "X = 1\n",
        "speech_tasks/zz_probe_task/deep/er/more.yaml": "task: zz_probe_more\n",
        "lm_eval_speech/zz_probe_pkg/__init__.py": "",
        "lm_eval_speech/zz_probe_pkg/sub/__init__.py": "",
        "models/zz_probe_backend/__init__.py": "",
    }
    for name, text in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(text)
    # neither is data the globs name: they must stay out
    (probe / "notes.txt").write_text("scratch\n")
    (probe / "__pycache__").mkdir()
    (probe / "__pycache__" / "utils.cpython-311.pyc").write_bytes(b"")

    shipped = assert_ships_exactly(build_wheel(tree, tmp_path / "wheels"), tree)
    mapped = {name.replace("speech_tasks/", "lm_eval_speech/tasks/").replace("models/", "lm_eval_speech/models/")
              for name in files}
    assert mapped <= shipped
    assert not {n for n in shipped if "notes.txt" in n or "__pycache__" in n}
