"""What the experiment scripts (`exp_*.py`) share: running `drivesim` as a user would type it,
with the CPU time it used, and reusing recordings that finished."""

from __future__ import annotations

import json
import resource
import shlex
import subprocess
import sys
from pathlib import Path

from drivesim_carla.errors import DrivesimError
from drivesim_carla.recorders.session import Session

CLI = [sys.executable, "-m", "drivesim_carla.cli"]  # the `drivesim` command of this interpreter


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def shown(cmd: list[str]) -> str:
    """A command as a person would type it (`drivesim ...`)."""
    return shlex.join(["drivesim", *cmd[len(CLI):]] if cmd[:len(CLI)] == CLI else cmd)


def drivesim(args: list[str]) -> tuple[float, str]:
    """Run `drivesim ARGS` (its output to our stderr): (CPU seconds, user + system, it used; the
    command as typed). A failure ends the script with one line naming the command."""
    cmd = [*CLI, *args]
    say(f"$ {shown(cmd)}")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    rc = subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr).returncode
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if rc != 0:
        raise SystemExit(f"{Path(sys.argv[0]).stem}: `{shown(cmd)}` failed (exit {rc}); see the messages above")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), shown(cmd)


def complete(path: Path) -> bool:
    """Whether `path` is a recording that finished (a cached one to reuse)."""
    try:
        return path.is_file() and Session(path).complete
    except DrivesimError:
        return False


def set_args(opts: dict) -> list[str]:
    """`--set key=value` for each option (strings as they are, the rest as JSON)."""
    out = []
    for k, v in opts.items():
        text = v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))
        out += ["--set", f"{k}={text}"]
    return out


def parse_size(text: str) -> tuple[int, int]:
    """`HxW` -> (h, w)."""
    h, _, w = text.lower().partition("x")
    return int(h), int(w)
