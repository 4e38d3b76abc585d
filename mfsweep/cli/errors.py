"""Any config error (a `ConfigValueError` from the part that owns the key, or Hydra's) as one line that names
the key, with the nearest known key or option for a typo."""
from __future__ import annotations

import difflib
import errno
import os
import re
import sys
from pathlib import Path

from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import OmegaConf

from mfsweep.method.errors import ConfigValueError

HYDRA_CONFIG_ERRORS = (ConfigCompositionException, OverrideParseException)  # MissingConfigException included
# Hydra's advice for an unknown key ("To append to your config use +key=value") is wrong for a typo.
HYDRA_ADVICE = re.compile(r"^(To append to your config use|Set the environment variable HYDRA_FULL_ERROR|"
                          r"\s*full_key:|\s*object_type=|\s*$)")


def is_config_error(err: Exception) -> bool:
    """Whether `err` is a bad config value (ours or Hydra's): one line and exit status 2."""
    return isinstance(err, (ConfigValueError, *HYDRA_CONFIG_ERRORS))


def one_line(err: Exception, conf_dir: Path, argv: list[str]) -> str:
    """The error as one line that names the key or group, with the nearest known one for a typo."""
    if isinstance(err, ConfigValueError):
        # `tangent=oracle needs ...` names the group's choice; `alpha.end must be ...` the key
        message = f"{err.key}{err.message}" if err.message.startswith("=") else err.message
        return f"config key '{err.key}': {message}"
    if isinstance(err, MissingConfigException) and err.options and "/" in (err.missing_cfg_file or ""):
        group, option = err.missing_cfg_file.rsplit("/", 1)
        return (f"config group '{group}': no option '{option}'{_did_you_mean(option, err.options)} "
                f"(options: {', '.join(sorted(err.options))})")
    if isinstance(err, OverrideParseException):
        reason = " ".join(err.message.split("See https://")[0].split())  # the grammar link is the same for every error
        return f"cannot parse the override '{err.override}': {reason}"
    unknown = re.match(r"Could not override '([^']+)'", str(err))
    if unknown:
        key = unknown.group(1)
        return f"config key '{key}' is not in the config{_did_you_mean(key, known_keys(conf_dir, argv))}"
    lines = [line.strip() for line in str(err).splitlines() if not HYDRA_ADVICE.match(line)]
    return " ".join(lines)


def _did_you_mean(word: str, candidates: list[str]) -> str:
    match = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f": did you mean {match[0]}?" if match else ""


def known_keys(conf_dir: Path, argv: list[str]) -> list[str]:
    """Config groups and every dotted key of the config composed with the command line's group choices."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    groups = sorted(p.name for p in conf_dir.iterdir() if p.is_dir() and p.name != "hydra")
    choices = [a for a in argv if "=" in a and a.split("=", 1)[0] in groups]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            cfg = compose("config", overrides=choices)
    except ConfigCompositionException:
        return groups
    return groups + _dotted(OmegaConf.to_container(cfg, resolve=False))


def _dotted(tree: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in tree.items():
        keys.append(f"{prefix}{key}")
        if isinstance(value, dict):
            keys += _dotted(value, f"{prefix}{key}.")
    return keys


def reader_gone() -> int:
    """After BrokenPipeError (`mfsweep-status DIR | head`): the reader has what it wanted. Point stdout at
    /dev/null so that the interpreter's flush at exit raises nothing more, and end with status 0."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


# What to do about each file-system error the sweep cannot fix itself (mfsweep/atomic.py, STORAGE_ERRNOS).
STORAGE_ADVICE = {errno.ENOSPC: "free some space", errno.EDQUOT: "free some space or raise the quota",
                  errno.EIO: "check the disk or file system", errno.EROFS: "make the file system writable"}


def is_storage_error(err: BaseException) -> bool:
    """A write the file system refused (full, quota, I/O error, read-only): the machine's fault, not the sweep's."""
    return isinstance(err, OSError) and err.errno in STORAGE_ADVICE


def storage_line(err: OSError, outcome: str = "finished cells are kept and the others resume") -> str:
    """The storage error as one line: the file, the error, what to do, and what the same command then does."""
    where = f" {err.filename}" if err.filename else ""
    return (f"cannot write{where}: {err.strerror or os.strerror(err.errno)}. {STORAGE_ADVICE[err.errno].capitalize()}, "
            f"then run the same command again: {outcome}.")
