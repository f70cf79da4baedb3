"""setuptools commands that ship ``lm_eval_speech.pth`` in regular and editable wheels.

The .pth file runs ``import lm_eval_speech._lmeval_hook`` at interpreter start-up; the hook then
waits, doing nothing, until lm_eval itself is imported (see lm_eval_speech/_lmeval_hook.py).
setuptools has no public way to place a file at the root of site-packages, so both commands add it.
A regular build also starts from an empty build_lib: setuptools never prunes it, and a module moved or
deleted since the last in-tree build (pip builds a local folder in place) would otherwise still ship.
"""

import os
import shutil

from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

PTH_FILE = "lm_eval_speech.pth"


class BuildPyWithPth(build_py):
    def run(self):
        if not self.editable_mode and os.path.isdir(self.build_lib):
            shutil.rmtree(self.build_lib)
        super().run()
        if not self.editable_mode:
            self.copy_file(PTH_FILE, os.path.join(self.build_lib, PTH_FILE))

    def get_outputs(self, include_bytecode=True):
        return [*super().get_outputs(include_bytecode), os.path.join(self.build_lib, PTH_FILE)]


class EditableWheelWithPth(editable_wheel):
    # The editable wheel is assembled from a temporary tree, not build_lib, so the file is
    # appended to the finished wheel (the approach labscript-suite uses for its own .pth).
    def _create_wheel_file(self, bdist_wheel):
        from wheel.wheelfile import WheelFile

        wheel_path = super()._create_wheel_file(bdist_wheel)
        with WheelFile(wheel_path, "a") as wheel:
            wheel.write(PTH_FILE, PTH_FILE)
        return wheel_path
