"""Test-session settings: Hypothesis keeps its example database outside the repository, and a runner for the
command line in this process (no interpreter start-up per call)."""

import io
import os
import subprocess
import sys
import tempfile
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

try:  # Hypothesis would write .hypothesis/ into the working directory (the repository)
    from hypothesis.configuration import set_hypothesis_home_dir

    set_hypothesis_home_dir(os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY")
                            or Path(tempfile.gettempdir()) / "xpcs-denoise-hypothesis")
except ImportError:  # pragma: no cover - hypothesis is a test extra
    pass

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run_cli(*args, cwd=None, subprocess_=False) -> subprocess.CompletedProcess:
    """``xpcs-denoise ARGS`` → (returncode, stdout, stderr), in this process unless ``subprocess_`` (for what only a
    process shows: start-up, exit codes of signals). Warnings go to the captured stderr, as on a terminal."""
    args = [str(a) for a in args]
    if subprocess_:
        return subprocess.run([sys.executable, "-m", "xpcs_denoise", *args], capture_output=True, text=True,
                              env=ENV, cwd=cwd, timeout=600)
    from xpcs_denoise.app.cli import main

    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with redirect_stdout(out), redirect_stderr(err), warnings.catch_warnings():
            warnings.simplefilter("default")  # Python's own defaults, as a terminal shows them
            for quiet in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                warnings.filterwarnings("ignore", category=quiet)
            warnings.showwarning = lambda msg, cat, fn, ln, file=None, line=None: err.write(
                warnings.formatwarning(msg, cat, fn, ln, line))
            try:
                rc = main(args)
            except SystemExit as exc:  # argparse: --help, --version, bad options
                rc = exc.code if isinstance(exc.code, int) else 1
    finally:
        os.chdir(here)
    return subprocess.CompletedProcess(args, rc, out.getvalue(), err.getvalue())
