#!/usr/bin/env bash
# Run HERE (with pip access), before a session's device run: the device machine's image
# (Python 3.12, torch, lightning, torchmetrics, scikit-learn, ...) lacks Hydra, OmegaConf and
# pythae, and it cannot reach PyPI. This puts their wheels in .whl/ and Debian's Fashion-MNIST in
# data/fashion-mnist/, both git-ignored; the device run carries both:
#   run(command="bash scripts/gpu_check.sh $OUT", carry=[".whl", "data/fashion-mnist"])
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .whl && mkdir -p .whl data
py312=(--only-binary=:all: --python-version 3.12 --implementation cp
       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
       --platform manylinux2014_x86_64)
python3 -m pip download -q --no-deps "${py312[@]}" -d .whl \
  hydra-core==1.3.8 omegaconf==2.3.1 pythae==0.1.2 pydantic==2.14.4 pydantic-core==2.50.5 \
  annotated-types==0.8.0 typing-inspection==0.4.5
# antlr4's runtime is published as a source archive only; it is pure Python.
python3 -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3
if [ -d /usr/share/datasets/fashion-mnist ]; then
  cp -r /usr/share/datasets/fashion-mnist data/
fi
du -sh .whl data/fashion-mnist 2>/dev/null || du -sh .whl
