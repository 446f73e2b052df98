"""Where the shipped Hydra configs live: inside the package when installed from a wheel,
at the repository's top level in a source checkout (editable install)."""

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]


def config_dir() -> str:
    for candidate in (_PACKAGE / "conf", _PACKAGE.parents[1] / "conf"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"vaelab's configs are missing: no conf/train.yaml near {_PACKAGE}")
