"""User errors: one message block naming the key or file and the fix, never a traceback.

The error classes (:class:`~sr_lightning.common.errors.UserError`, ``ConfigError``) are in
:mod:`sr_lightning.common.errors`, so that data, nets and core raise them without importing
this layer; this module turns them into what the user sees.

Every console script (sr-train, sr-eval, sr-upscale, sr-export, sr-report) runs through
:func:`run_cli`. An error that is the user's to fix (a bad value, a missing file or weights,
bad data, a config key that does not exist) prints as ``<prog>: error: <message>`` and exits
with status 2. Anything else is a bug and keeps its full traceback. ``HYDRA_FULL_ERROR=1``
(or ``SR_DEBUG=1``) shows the traceback of user errors too.

Hydra wraps errors raised while instantiating a config in ``InstantiationException``; the
message shown is the root cause's, which is the one that names the key.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

# the user errors live in the leaf package (every layer raises them); here for the apps' imports
from sr_lightning.common.errors import ConfigError as ConfigError
from sr_lightning.common.errors import UserError as UserError
from sr_lightning.core.derived import moved_message

# set by run_cli so that Hydra lets exceptions through to it; tells child processes (DDP
# ranks) that the user did not ask for tracebacks
_QUIET_FLAG = "_SR_QUIET_ERRORS"
EXIT_USER_ERROR = 2


def causes(err: BaseException) -> Iterator[BaseException]:
    """``err`` and the exceptions it was raised from, outermost first."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or (None if err.__suppress_context__ else err.__context__)


def root_cause(err: BaseException) -> BaseException:
    """The innermost exception of Hydra's instantiation wrapping (the one naming the key)."""
    from hydra.errors import InstantiationException

    for inner in causes(err):
        if not isinstance(inner, InstantiationException):
            return inner
    return err


def _raised_by_us(err: BaseException) -> bool:
    """True when the innermost frame that raised ``err`` is sr_lightning's own code."""
    tb = err.__traceback__
    module = None
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "")
        if module == "__main__":  # python -m sr_lightning.apps.eval: the module's real name
            spec = tb.tb_frame.f_globals.get("__spec__")
            module = getattr(spec, "name", "") or ""
        tb = tb.tb_next
    return bool(module) and module.startswith("sr_lightning")


def is_user_error(err: BaseException) -> bool:
    """Errors whose message is written for the user: ours, and Hydra's config errors."""
    from hydra.errors import CompactHydraException, MissingConfigException
    from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

    # Hydra's compact errors: composition, override syntax, missing config
    if isinstance(err, UserError | CompactHydraException | MissingConfigException):
        return True
    if isinstance(err, MissingMandatoryValue | OmegaConfBaseException):
        return True
    # our own ValueError / OSError messages name the key or file (we write them for users);
    # FloatingPointError: the non-finite loss check (a learning rate too high, bad data)
    return isinstance(err, ValueError | OSError | FloatingPointError) and _raised_by_us(err)


def quoting_hint(err: BaseException) -> str:
    """For an override Hydra's lexer cannot read (a space, brackets or non-ASCII letters in an
    unquoted path): the same override with its value quoted, ready to paste."""
    from hydra.errors import OverrideParseException

    override = getattr(err, "override", None)
    if not isinstance(err, OverrideParseException) or not override or "=" not in override:
        return ""
    key, value = override.split("=", 1)
    if not value or value[0] in "'\"":
        return ""
    if '"' not in value:
        quoted = f"'{key}=\"{value}\"'"
    elif "'" not in value:
        quoted = f"\"{key}='{value}'\""
    else:
        return ""
    return (
        f"quote the value of {key}: {quoted} (quotes for Hydra inside quotes for the shell); "
        "an unquoted value may not hold spaces, brackets or non-ASCII letters"
    )


_LITERAL = (
    (re.compile(r"invalid literal for int\(\) with base \d+: '(.*)'"), "an integer"),
    (re.compile(r"could not convert string to float: '(.*)'"), "a number"),
)


def literal_hint(err: BaseException) -> str:
    """``tile=abc: tile takes an integer`` for int()/float() of a value given on the command
    line (the message of the conversion names the value, not the key)."""
    if not isinstance(err, ValueError):
        return ""
    found = [(m, kind) for pattern, kind in _LITERAL if (m := pattern.search(str(err)))]
    if not found:
        return ""
    match, kind = found[0]
    keys = [key for key, value in _task_overrides() if value == match.group(1)]
    if not keys:
        return ""
    return "; ".join(f"{k}={match.group(1)}: {k} takes {kind}" for k in keys)


def _task_overrides() -> list[tuple[str, str]]:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    pairs = []
    for override in HydraConfig.get().overrides.task:
        key, _, value = str(override).partition("=")
        pairs.append((key.lstrip("+~"), value.strip("'\"")))
    return pairs


def nonfinite_hint(err: BaseException) -> str:
    """The keys to change when the loss turns NaN / Inf."""
    if not isinstance(err, FloatingPointError):
        return ""
    return (
        "the keys: model.optimizer.lr (the learning rate), trainer.gradient_clip_val "
        "(gradient clipping)"
    )


def closest(word: str, candidates: list[str], cutoff: float = 0.7) -> list[str]:
    """The candidates most like ``word`` (ties kept), none when nothing is close."""
    scores = {c: difflib.SequenceMatcher(None, word, c).ratio() for c in candidates}
    best = max(scores.values(), default=0.0)
    if best < cutoff:
        return []
    return [c for c, score in scores.items() if score >= best - 0.02]


def suggest_key(err: BaseException) -> str:
    """``did you mean trainer.max_steps?`` for an unknown key, from the composed config."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    for inner in causes(err):
        if not isinstance(inner, ConfigKeyError | ConfigAttributeError):
            continue
        parent, key = getattr(inner, "parent_node", None), getattr(inner, "key", None)
        if parent is None or key is None or not hasattr(parent, "keys"):
            continue
        keys = [str(k) for k in parent]
        full_key = str(getattr(inner, "full_key", key) or key)
        moved = moved_message(full_key)
        if moved:
            return moved
        prefix = full_key[: -len(str(key))] if full_key.endswith(str(key)) else ""
        close = closest(str(key), keys)
        if close:
            names = " or ".join(f"{prefix}{k}" for k in close)
            return f"did you mean {names}?"
        shown = ", ".join(sorted(keys)[:30])
        return f"keys of {prefix.rstrip('.') or 'the config'}: {shown}"
    return ""


def user_message(err: BaseException) -> str:
    """The message block of a user error: what is wrong, what exists, what to do."""
    from hydra.errors import CompactHydraException

    root = root_cause(err)
    if isinstance(root, CompactHydraException):
        # Hydra's own text: "Could not override 'x'.\nTo append ... use +x=...\nKey ..."
        text = str(root).strip()
        cause = root.__cause__
        if cause is not None and str(cause).split("\n")[0] not in text:
            text += "\n" + str(cause).split("\n")[0]
    elif isinstance(root, FileNotFoundError) and root.filename and not root.args[1:]:
        text = f"{root.strerror or root}: {root.filename}"
    else:
        text = str(root).strip() or type(root).__name__
    hint = suggest_key(err) or quoting_hint(root) or nonfinite_hint(root) or literal_hint(root)
    if ": moved; " in hint:  # Hydra's "+key=... to append" would add a key nothing reads
        text = text.splitlines()[0]
    return f"{text}\n{hint}" if hint else text


def show_tracebacks() -> bool:
    """Whether the user asked for full tracebacks (``HYDRA_FULL_ERROR=1`` or ``SR_DEBUG=1``)."""
    if os.environ.get("SR_DEBUG", "") not in ("", "0"):
        return True
    return os.environ.get("HYDRA_FULL_ERROR") == "1" and os.environ.get(_QUIET_FLAG) != "1"


def print_user_error(prog: str, err: BaseException, hint: str = "HYDRA_FULL_ERROR=1") -> None:
    """``<prog>: error: <message>``, its further lines indented, and how to see the traceback."""
    lines = user_message(err).splitlines() or [""]
    print(f"{prog}: error: {lines[0]}", file=sys.stderr)
    for line in lines[1:]:
        print(f"  {line}", file=sys.stderr)
    print(f"  ({hint} shows the traceback)", file=sys.stderr)


@contextmanager
def hydra_errors_pass_through() -> Iterator[None]:
    """Let exceptions leave ``@hydra.main`` instead of being printed there.

    Hydra prints its own error report unless ``HYDRA_FULL_ERROR=1``; run_cli needs the
    exception itself (to unwrap it, suggest a key). The variable is set only while the app
    runs, with a flag that keeps the user's (unset) choice for child processes.
    """
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        yield
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"
    os.environ[_QUIET_FLAG] = "1"
    try:
        yield
    finally:
        os.environ.pop("HYDRA_FULL_ERROR", None)
        os.environ.pop(_QUIET_FLAG, None)


def run_cli(prog: str, app: Callable[[], Any]) -> Any:
    """Run a console script's app; a user error prints one block and exits with status 2."""
    try:
        with hydra_errors_pass_through():
            return app()
    except Exception as err:
        if show_tracebacks() or not is_user_error(root_cause(err)):
            raise
        print_user_error(prog, err)
        raise SystemExit(EXIT_USER_ERROR) from None


def format_failure(err: BaseException) -> str:
    """``Type: message`` of a failed job's root cause, for one-line summaries."""
    root = root_cause(err)
    text = " ".join(user_message(root).split()) if is_user_error(root) else str(root)
    return f"{type(root).__name__}: {text}"


def traceback_text(err: BaseException) -> str:
    return "".join(traceback.format_exception(err))


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


@contextmanager
def exit_on_user_error(prog: str) -> Iterator[None]:
    """Inside a Hydra task: a single run's user error prints one block and exits (status 2).

    Hydra would first print "Error executing job with overrides ..."; a multirun job raises
    instead, so that the sweep records it and goes on with the other jobs.
    """
    try:
        yield
    except Exception as err:
        if show_tracebacks() or in_multirun() or not is_user_error(root_cause(err)):
            raise
        print_user_error(prog, err)
        raise SystemExit(EXIT_USER_ERROR) from None


def file_errors(*extra: type[BaseException]) -> tuple[type[BaseException], ...]:
    """What reading a model file or image can raise that is the user's to fix (a missing or
    unsafe file, a bad value): sr-export and sr-upscale print these as one line."""
    return (ValueError, OSError, *extra)  # an unsafe model file is a ValueError too
