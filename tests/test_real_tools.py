"""The boost_corr → xpcs-denoise → xpcs-viewer round trip of scripts/check_real_tools.py, where the real tools
are installed (Python ≥ 3.12: bash scripts/check_real_tools.sh builds such an environment); skipped elsewhere."""

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

pytest.importorskip("boost_corr")
pytest.importorskip("pyxpcsviewer.core.xpcs_file")


@pytest.mark.slow
def test_boost_corr_to_xpcs_denoise_to_xpcs_viewer(tmp_path, monkeypatch):
    if not (shutil.which("boost_corr") or Path(sys.executable).with_name("boost_corr").exists()):
        pytest.skip("boost_corr command not on PATH")
    monkeypatch.setenv("QT_QPA_PLATFORM", os.environ.get("QT_QPA_PLATFORM", "offscreen"))
    path = Path(__file__).resolve().parents[1] / "scripts" / "check_real_tools.py"
    spec = importlib.util.spec_from_file_location("check_real_tools", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.run_checks(tmp_path, n_frames=200)  # raises AssertionError with the failed check's message
