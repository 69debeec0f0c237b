"""Every code block of the README and the documentation runs, in order, page by page, in a fresh folder: what the
docs show is what this version does. Python blocks share one namespace per page; bash blocks run line by line
(the set-up lines that install packages are what CI itself runs, and are skipped here)."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```(python|bash)\n(.*?)^```", re.S | re.M)


def blocks(page: str):
    return BLOCK.findall((ROOT / page).read_text())


def run_bash(code: str, cwd: Path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    for line in code.splitlines():
        line = line.split(" #")[0].strip()
        if not line or line.startswith("#") or "pip install" in line:
            continue
        args = shlex.split(line)
        if args[0] == "xpcs-denoise":  # the installed command, through this interpreter
            args = [sys.executable, "-m", "xpcs_denoise", *args[1:]]
        r = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env, timeout=600)
        assert r.returncode == 0, f"{line}\n{r.stderr[-2000:]}"


def test_every_page_has_blocks_and_links_resolve():
    assert len(PAGES) >= 6
    for page in PAGES:
        text = (ROOT / page).read_text()
        for target in re.findall(r"\]\(([^)#:]+\.md)", text):
            assert (ROOT / page).parent.joinpath(target).is_file(), f"{page}: broken link {target}"
    assert "```python" in (ROOT / "docs" / "tutorial.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_code_blocks_run(page, tmp_path, monkeypatch):
    found = blocks(page)
    if not found:
        pytest.skip(f"{page} has no code blocks")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    if page == "README.md":  # the main job's "your data": a frame stack and its ROI map
        import xpcs_denoise as xd

        sim = xd.simulate_speckle(n_frames=80, n_pixels=1500, gamma=[0.03, 0.08], beta=0.2, mean_count=0.3,
                                  n_rois=2, seed=0)
        np.save("frames.npy", sim.frames)
        np.save("rois.npy", sim.labels)
    import matplotlib

    matplotlib.use("Agg")
    ns: dict = {"__name__": "__docs__"}
    for i, (lang, code) in enumerate(found):
        if lang == "python":
            exec(compile(code, f"{page} block {i + 1}", "exec"), ns)  # noqa: S102 - our own documentation
        else:
            run_bash(code, tmp_path)
