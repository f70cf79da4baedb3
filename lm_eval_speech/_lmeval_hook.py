"""Back-port of upstream lm-eval's plugin entry points to lm-eval 0.4.13.

Upstream lm-eval reads installed plugins from the entry-point groups ``lm_eval.models``
(PR #4013, ``registry.load_plugins``) and ``lm_eval.tasks`` (PR #4015,
``discover_plugin_task_paths``); 0.4.13 reads neither. ``lm_eval_speech.pth`` imports this
module at interpreter start-up. It only adds a meta-path finder, which does nothing until
lm_eval itself imports ``lm_eval.models`` or ``lm_eval.tasks.manager``; then it

* registers every ``lm_eval.models`` entry point as a lazy ``"module:Class"`` placeholder
  (built-in names such as ``hf`` or ``dummy`` are never replaced), and
* adds every ``lm_eval.tasks`` package directory to ``TaskManager``'s search path, before the
  user's ``--include_path`` (so the user's tasks still win, as upstream orders them), and
* teaches ``--use_cache``'s request hashing (``lm_eval.api.model``) numpy arrays: lm-eval 0.4.13
  digests bytes and PIL images but raises on the audio arrays of multimodal requests; an array
  is keyed by its dtype, shape and bytes, so equal audio hits and any change misses, and
* lets speech output (``lm_eval_speech.speech.output``) find the run's ``--output_path`` and
  adds each logged sample's ``speech_output`` records (path, rate, duration, transcript).

It steps aside where lm_eval discovers plugins natively, and ``LM_EVAL_SPEECH_DISABLE_HOOK=1``
switches it off. Only ``os`` and ``sys`` are imported here: this runs in every interpreter.
"""

import os
import sys

DISABLE_ENV = "LM_EVAL_SPEECH_DISABLE_HOOK"
MODELS_GROUP = "lm_eval.models"
TASKS_GROUP = "lm_eval.tasks"


def _entry_points(group):
    from importlib.metadata import entry_points

    return list(entry_points(group=group))


def _register_plugin_models(models_module):
    from lm_eval.api import registry

    if hasattr(registry, "load_plugins"):
        return
    for ep in _entry_points(MODELS_GROUP):
        if ep.name not in registry.model_registry:
            registry.model_registry.register(ep.name, target=ep.value)


def plugin_task_dirs():
    """Directories of the packages named in the ``lm_eval.tasks`` entry-point group."""
    import importlib.util

    dirs = {}  # ordered, and one entry per folder: a package can be listed by two dist-infos
    for ep in _entry_points(TASKS_GROUP):
        spec = importlib.util.find_spec(ep.value.split(":", 1)[0])
        if spec is not None and spec.submodule_search_locations:
            dirs[os.path.realpath(list(spec.submodule_search_locations)[0])] = None
    return list(dirs)


def _add_plugin_task_dirs(manager_module):
    if hasattr(manager_module, "discover_plugin_task_paths"):
        return
    task_manager = manager_module.TaskManager
    original_init = task_manager.__init__

    def __init__(self, verbosity=None, include_path=None, include_defaults=True, metadata=None):
        if include_path is None:
            user_paths = []
        elif isinstance(include_path, (list, tuple)):
            user_paths = list(include_path)
        else:
            user_paths = [include_path]
        user_real = {os.path.realpath(str(p)) for p in user_paths}
        plugin_paths = [d for d in plugin_task_dirs() if d not in user_real]
        merged = plugin_paths + user_paths
        original_init(
            self,
            verbosity,
            include_path=merged or None,
            include_defaults=include_defaults,
            metadata=metadata,
        )

    __init__.__wrapped__ = original_init
    task_manager.__init__ = __init__


def _hash_arrays_in_cache_keys(model_module):
    original = getattr(model_module, "_multimodal_cache_default", None)
    if original is None or getattr(original, "handles_arrays", False):
        return

    def default(obj):
        if type(obj).__module__ == "numpy" and hasattr(obj, "tobytes") and hasattr(obj, "shape"):
            import hashlib

            import numpy

            array = numpy.ascontiguousarray(obj)
            digest = hashlib.sha256(f"{array.dtype.str}|{array.shape}|".encode() + array.tobytes()).hexdigest()
            return {"__ndarray_sha256__": digest}
        return original(obj)

    default.handles_arrays = True
    model_module._multimodal_cache_default = default


def _wrap(owner, name, wrapper, static=False):
    """Replace ``owner.name`` by ``wrapper(original)``, once (a module re-executed keeps one layer)."""
    original = getattr(owner, name)
    if getattr(original, "lm_eval_speech", False):
        return
    wrapped = wrapper(original)
    wrapped.lm_eval_speech = True
    setattr(owner, name, staticmethod(wrapped) if static else wrapped)


def _tracker_hooks(tracker_module):
    tracker = tracker_module.EvaluationTracker

    def init(original):
        def __init__(self, *args, **kwargs):
            from lm_eval_speech import run

            original(self, *args, **kwargs)
            run.output_path = kwargs.get("output_path", args[0] if args else None)

        return __init__

    def aggregated(original):
        def save_results_aggregated(self, results, *args, **kwargs):
            from lm_eval_speech import run

            run.results = results
            return original(self, results, *args, **kwargs)

        return save_results_aggregated

    def samples(original):
        def save_results_samples(self, task_name, samples):
            from lm_eval_speech.data import BENCHMARKS
            from lm_eval_speech.speech.output import SAMPLE_FIELD, sample_records

            ours = task_name.startswith(BENCHMARKS)
            for sample in samples:
                records = sample_records(sample)
                if records is not None:
                    sample[SAMPLE_FIELD] = records
                # Our judged tasks' filtered responses are verdict dicts (lm-eval may have copied a
                # Verdict into a plain dict): written as JSON values, not as Python reprs.
                verdicts = [r for r in sample.get("filtered_resps", []) if isinstance(r, dict)] if ours else []
                if verdicts:
                    sample["judge_verdicts"] = [dict(v) for v in verdicts]
                    sample["filtered_resps"] = ["see judge_verdicts" if isinstance(r, dict) else r for r in sample["filtered_resps"]]
            return original(self, task_name, samples)

        return save_results_samples

    _wrap(tracker, "__init__", init)
    _wrap(tracker, "save_results_aggregated", aggregated)
    _wrap(tracker, "save_results_samples", samples)


def _provenance_in_configs(task_module):
    def dumped(original):
        def dump_config(self):
            from lm_eval_speech.provenance import add_to_config

            return add_to_config(original(self))

        return dump_config

    _wrap(task_module.Task, "dump_config", dumped)


class _WithoutFailures:
    """``--use_cache``'s store, refusing failed generations: a re-run must retry them, not replay them."""

    def __init__(self, store):
        self._store = store

    def __setitem__(self, key, value):
        from lm_eval_speech.outcomes import is_failure

        if not is_failure(value):
            self._store[key] = value

    def __getattr__(self, name):
        return getattr(self._store, name)

    def __contains__(self, key):
        return key in self._store

    def __getitem__(self, key):
        return self._store[key]


def _model_hooks(model_module):
    _hash_arrays_in_cache_keys(model_module)

    def init(original):
        def __init__(self, *args, **kwargs):
            original(self, *args, **kwargs)
            self.dbdict = _WithoutFailures(self.dbdict)

        return __init__

    _wrap(model_module.CachingLM, "__init__", init)


def _fail_run_on_errors(run_module):
    def checked(original):
        def _execute(args):
            original(args)
            from lm_eval_speech import outcomes, run

            problems = outcomes.run_problems(run.results) if run.results else []
            if problems:
                sys.stderr.write(
                    "lm-eval-speech: results and samples are written, but the run could not score what it was asked to:\n"
                    + "\n".join(f"  {p}" for p in problems)
                    + f"\n(--metadata '{{\"{outcomes.FAIL_ON_ERROR_KEY}\": SHARE}}' sets the failed share allowed, "
                    "false turns the check off)\n"
                )
                raise SystemExit(1)

        return _execute

    _wrap(run_module.Run, "_execute", checked, static=True)


_AFTER_IMPORT = {
    "lm_eval.models": _register_plugin_models,
    "lm_eval.tasks.manager": _add_plugin_task_dirs,
    "lm_eval.api.model": _model_hooks,
    "lm_eval.api.task": _provenance_in_configs,
    "lm_eval.loggers.evaluation_tracker": _tracker_hooks,
    "lm_eval._cli.run": _fail_run_on_errors,
}


class _AfterImportFinder:
    """Meta-path finder that runs a function right after a watched module has executed."""

    def find_spec(self, fullname, path=None, target=None):
        after = _AFTER_IMPORT.get(fullname)
        if after is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader_exec = spec.loader.exec_module

        def exec_module(module):
            loader_exec(module)
            after(module)

        spec.loader.exec_module = exec_module
        return spec


def install():
    if os.environ.get(DISABLE_ENV, "").strip().lower() in ("1", "true", "yes", "on"):
        return
    if any(type(f).__name__ == "_AfterImportFinder" and f.__module__ == __name__ for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _AfterImportFinder())


install()
