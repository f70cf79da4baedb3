"""S2S-Arena v1's task taxonomy (paper Table 3): 4 domains, 21 tasks, and the data folders.

Task ids are the authors' seed-folder names, with their spelling fixed ("pronounciation" ->
``pronunciation``) and the three medical tasks split: they share the folder ``illness`` and are
told apart by file-name prefix (``illness*``, ``healthcare*``, ``psychological*``).
"""

from __future__ import annotations

DOMAINS: dict[str, tuple[str, ...]] = {
    "education": ("pronunciation", "stress", "rhythm", "polyphone", "pause", "translation", "language"),
    "social": ("humor", "irony", "identity", "emotion"),
    "entertainment": ("sing", "nature", "poetry", "role", "story", "tongue_twister", "crosstalk"),
    "medical": ("illness", "healthcare", "psychological"),
}

DOMAIN_TITLES = {
    "education": "Education",
    "social": "Social Companionship",
    "entertainment": "Entertainment",
    "medical": "Medical Consultation",
}

TASK_TITLES = {
    "pronunciation": "Pronunciation correction",
    "stress": "Emphasis control",
    "rhythm": "Rhythm control",
    "polyphone": "Polyphonic word comprehension",
    "pause": "Pause and segmentation",
    "translation": "Cross-lingual emotional translation",
    "language": "Language consistency",
    "humor": "Implication understanding",
    "irony": "Sarcasm detection",
    "identity": "Identity-based response",
    "emotion": "Emotion recognition and expression",
    "sing": "Singing capability",
    "nature": "Natural sound simulation",
    "poetry": "Poetry recitation",
    "role": "Role-playing",
    "story": "Storytelling",
    "tongue_twister": "Tongue twisters",
    "crosstalk": "Stand-up comedy / skit (crosstalk)",
    "illness": "Querying symptoms",
    "healthcare": "Health consultation",
    "psychological": "Psychological comfort",
}

TASK_DOMAIN = {task: domain for domain, tasks in DOMAINS.items() for task in tasks}

# Folder names seen in the authors' repo, dataset and Space, mapped to task ids.
FOLDER_ALIASES = {
    "pronounciation": "pronunciation",
    "natural": "nature",
    "natural_audios": "nature",
    "singing": "sing",
    "sing_audios": "sing",
    "tongue_twister_audios": "tongue_twister",
}
MEDICAL_FOLDER = "illness"
MEDICAL_PREFIXES = ("healthcare", "psychological", "illness")
# The Space's data/<name>.json files are named by task, not always as the data folders are:
# tongue.json describes tongue_twister/, and the three medical files share the illness/ folder.
SPACE_FILE_ALIASES = {
    "tongue": "tongue_twister",
    "healthcare": MEDICAL_FOLDER,
    "psychological": MEDICAL_FOLDER,
}


def folder_task(folder: str) -> str | None:
    """The task a top-level data folder holds (``illness`` for the shared medical folder), or None."""
    folder = folder.lower()
    task = FOLDER_ALIASES.get(folder, folder)
    return task if task in TASK_DOMAIN else None


def space_file_folder(json_stem: str) -> str | None:
    """The data folder (as :func:`folder_task` names it) that the Space's ``<json_stem>.json`` describes."""
    stem = json_stem.lower()
    return folder_task(SPACE_FILE_ALIASES.get(stem, stem))


def task_of(folder: str, file_name: str) -> str | None:
    """The task id of an audio file from its top folder and name, or None when it is no task's."""
    task = folder_task(folder)
    if task == MEDICAL_FOLDER:
        stem = file_name.lower()
        return next((prefix for prefix in MEDICAL_PREFIXES if stem.startswith(prefix)), MEDICAL_FOLDER)
    return task
