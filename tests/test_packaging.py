"""A non-editable install ships conf/ inside the package and runs from anywhere."""

import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import CONF

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_carries_the_configs_and_runs_without_the_checkout(tmp_path):
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path / "dist"), "-q"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp_path / "dist").glob("vaelab-*.whl")
    shipped = {
        name.removeprefix("vaelab/conf/")
        for name in zipfile.ZipFile(wheel).namelist()
        if name.startswith("vaelab/conf/")
    }
    assert shipped == {str(p.relative_to(CONF)) for p in CONF.rglob("*.yaml")}
    # The SLURM launcher is a Hydra plugin: Hydra finds plugins in the hydra_plugins namespace,
    # which other packages share (an __init__.py there would hide theirs).
    names = zipfile.ZipFile(wheel).namelist()
    assert "hydra_plugins/vaelab_launchers/slurm.py" in names
    assert "hydra_plugins/__init__.py" not in names

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = subprocess.run(
        [sys.executable, "-c",
         "import vaelab.train, sys; print(vaelab.train.__file__); sys.argv[1:] = ['debug=fdr'];"
         " vaelab.train.main()"],
        cwd=elsewhere, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith(str(site))
    assert list((elsewhere / "logs" / "debug" / "runs").glob("*/results.json"))  # debug=fdr
