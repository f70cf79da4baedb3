"""How every setting of this project is read: one boolean parser, one rule for unknown names.

Model args, gen_kwargs, judge settings and ``--metadata`` keys all reach us as loose dicts (often
strings, from the command line). A boolean is ``true``/``false`` (``1``/``0``, ``yes``/``no``,
``on``/``off``, any case) or a real bool; anything else is an error, never silently false. A name
nobody accepts is an error listing the names that are accepted: a typo must not vanish.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")


class OptionError(ValueError):
    """A setting with an unknown name, or a value of the wrong kind."""


def as_bool(value: Any, where: str) -> bool:
    """A boolean setting; ``where`` names it in the error (e.g. ``"--metadata load_audio"``)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE + FALSE:
        return value.strip().lower() in TRUE
    raise OptionError(f"{where}={value!r}: expected true or false")


def check_known(given: Iterable[str], accepted: Iterable[str], where: str) -> None:
    """Refuse names that are not accepted, listing the ones that are."""
    accepted = sorted(set(accepted))
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise OptionError(f"{where}: unknown {', '.join(unknown)}; accepted: {', '.join(accepted)}")
