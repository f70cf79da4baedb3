"""The package list, found on disk: a new subpackage or task folder ships without editing a list.

Three source folders install under one import name, so nothing generic (``models``, ``tasks``)
reaches site-packages. ``[tool.setuptools.packages.find]`` cannot rename a folder, hence this file:
setuptools' discovery runs once per folder and each result is prefixed with the folder's import name.
The task folders (speech_tasks/jasco, ...) have no ``__init__.py`` (PEP 420 namespace packages), so
the namespace-aware finder is used, keeping the folders that hold Python files. Everything else
(package data, version, build commands) stays in pyproject.toml.
"""

from pathlib import Path

from setuptools import find_namespace_packages, setup

HERE = Path(__file__).resolve().parent

# import name -> source folder; subpackages follow their parent's folder
PACKAGE_DIR = {
    "lm_eval_speech": "lm_eval_speech",
    "lm_eval_speech.models": "models",
    "lm_eval_speech.tasks": "speech_tasks",
}


def discover_packages() -> list[str]:
    """Every folder under each root, at any depth, that holds a ``.py`` file, by its installed name."""
    found = set(PACKAGE_DIR)
    for name, folder in PACKAGE_DIR.items():
        root = HERE / folder
        for sub in find_namespace_packages(str(root), exclude=["*__pycache__*"]):
            parts = sub.split(".")
            if all(part.isidentifier() for part in parts) and any(root.joinpath(*parts).glob("*.py")):
                found.add(f"{name}.{sub}")
    return sorted(found)


setup(packages=discover_packages(), package_dir=PACKAGE_DIR)
