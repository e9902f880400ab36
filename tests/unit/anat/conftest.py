"""One anatomical workflow run per real T1w, shared by every realdata module that asks."""

from __future__ import annotations

from pathlib import Path

import pytest

from brainscale.workflows.anat.workflow import init_anat_wf


@pytest.fixture(scope="session")
def anat_run(tmp_path_factory):
    """Return ``run(t1w) -> anat output folder``; each T1w runs once per test session.

    The workflow runs with the 1 mm MNI-space output, Desikan-Killiany regions and the
    Linear plugin (the default seed), as ``run.py ... --modalities anat`` would.
    """
    done: dict[Path, Path] = {}

    def run(t1w: Path) -> Path:
        t1w = Path(t1w)
        if t1w not in done:
            sub = t1w.name.split("_")[0]
            tmp = tmp_path_factory.mktemp(f"{t1w.parent.parent.parent.name}-{sub}")
            wf = init_anat_wf(t1w_files=[str(t1w)], output_dir=str(tmp / "out"),
                              atlases=["DesikanKilliany"], template_resolution=1)
            wf.base_dir = str(tmp / "work")
            wf.run(plugin="Linear")
            done[t1w] = tmp / "out" / sub / "anat"
        return done[t1w]

    return run
