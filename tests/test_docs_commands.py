"""Every command the README and the guides print runs, at a tiny size, or is marked as illustrative.

Each Markdown file's fenced blocks run in order in a scratch folder of its own (HOME too, for
`~/data`), as a reader following the page would run them: `bash` blocks through bash, `python`
blocks with exec, the `$` lines of `console` blocks compared with the error line printed under
them. A block preceded by `<!-- illustrative: <why> -->` is not run (it needs a GPU, a cluster,
the internet, minutes, or sets up an environment); the reason is the maintainer's note.

The vaelab commands inside a bash block (`vaelab-train`, `-eval`, `-embed`, `-sample`,
`python -m vaelab.<command>`, `python scripts/<script>.py`) are shell functions that hand their
arguments, working directory and environment to this process, which runs the console script's
entry point in-process (a CLI subprocess pays ~6 s of imports; tests/test_cli.py runs the real
ones) and hands back its exit status. What makes them fast, and nothing else, is changed:
`quick()` scales epochs down tenfold, takes 2 training batches and 1 validation and test batch,
2 importance samples, 2 search trials, 2 parallel jobs, small samples for the disentanglement
scores, and at most 2 values of each swept key. `<run>` stands for the newest training run in
the scratch folder as the command starts (one is trained first when there is none), `<a cvae
run>` for the newest run of that model (or data, or experiment). Data sets that need files get
small ones in their published formats (`furnish`).
"""

import importlib
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from tests.conftest import COMMANDS, CONF, console, console_here, entry_point, write_mnist_like
from tests.datasets import (
    expression_matrix,
    write_celeba_like,
    write_cifar_like,
    write_dsprites_like,
    write_table,
)

# Some pages train on the full Fashion-MNIST; the module takes minutes, so it starts early.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```(\w*)")
MARK = re.compile(r"^<!-- illustrative: (.+?) -->$")
RUN_LANGUAGES = {"bash", "python", "console"}
# `logs/train/runs/<run>`, `<run>`, `<a cvae run>`, `<an AE run>`, `<a tabular run>`
PLACEHOLDER = re.compile(r"(?:logs/train/runs/)?<(?:an? (\w+) run|run)>")
DEFERRED = re.compile(r"logs/train/runs/@@(\w*)@@")


@dataclass
class Block:
    page: Path
    line: int
    language: str
    text: str
    illustrative: str | None


def blocks(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if fence:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            mark = MARK.match(lines[i - 1]) if i else None
            text = "\n".join(lines[i + 1 : end]) + "\n"
            found.append(Block(page, i + 1, fence.group(1), text, mark and mark.group(1)))
            i = end
        i += 1
    return found


def where(block: Block) -> str:
    return f"{block.page.relative_to(ROOT)}:{block.line}"


def test_every_block_is_run_or_marked_with_a_reason():
    for page in PAGES:
        for block in blocks(page):
            if block.language in ("", "text", "yaml"):  # output, a tree, a file's text: not run
                assert block.illustrative is None, f"{where(block)}: an output block needs no mark"
                continue
            assert block.language in RUN_LANGUAGES, f"{where(block)}: fence {block.language!r}"
            if block.illustrative is not None:
                assert len(block.illustrative.split()) >= 3, f"{where(block)}: say why"


# ---- the vaelab commands, run in this process --------------------------------------------------

FAST = {
    "trainer.limit_train_batches": "2",
    "trainer.limit_val_batches": "1",
    "trainer.limit_test_batches": "1",
    "iw_samples": "2",
    # the disentanglement scores' sample sizes (data with known factors)
    "metrics.num_train": "50",
    "metrics.num_eval": "20",
    "metrics.num_variance_estimate": "200",
    "metrics.fit_examples": "100",
    "metrics.score_examples": "100",
}


def quick(program: str, args: list[str]) -> list[str]:
    """The command's arguments with its sizes scaled down (see the module's docstring)."""
    sweep = "-m" in args or "--multirun" in args
    out = []
    for arg in args:
        key, _, value = arg.lstrip("+").partition("=")
        if key == "trainer.max_epochs":
            arg = f"{arg.split('=')[0]}={max(1, math.ceil(int(value) / 10))}"
        elif key in ("iw_samples", "hparams_search.n_trials", "hydra.launcher.n_jobs"):
            arg = f"{key}=2"
        elif sweep and "," in value and not value.startswith(("[", "{")):
            arg = f"{key}={','.join(value.split(',')[:2])}"
        out.append(arg)
    keys = {a.lstrip("+").partition("=")[0] for a in out}
    if program == "train" and not any(a.startswith("resume=") for a in out):
        out += [] if "trainer.max_epochs" in keys else ["trainer.max_epochs=2"]
        out += [f"{k}={v}" for k, v in FAST.items() if k not in keys]
    if program == "evaluate":
        out += [
            f"{k}={v}"
            for k, v in FAST.items()
            if k not in keys and "_train_" not in k and "_val_" not in k
        ]
    return out


SHIM = r"""
vaelab_call() {
  local envs
  mapfile -d '' envs < <(env -0)
  printf '%s\0' "$#" "$PWD" "$@" "${#envs[@]}" "${envs[@]}" >&"$VAELAB_DOCS_ASK"
  local status
  read -r status <&"$VAELAB_DOCS_HEAR"
  return "$status"
}
vaelab-train() { vaelab_call train "$@"; }
vaelab-eval() { vaelab_call evaluate "$@"; }
vaelab-embed() { vaelab_call embed "$@"; }
vaelab-sample() { vaelab_call sample "$@"; }
python() {
  if [ "$1" = -m ] && [[ "$2" == vaelab.* ]]; then
    local module="$2"; shift 2; vaelab_call "$module" "$@"
  elif [[ "$1" == scripts/*.py ]]; then
    vaelab_call script "$@"
  else
    command python "$@"
  fi
}
set -e
"""


def fields(stream):
    """The NUL-separated fields a bash function writes, one at a time."""
    pending = b""
    while True:
        while b"\0" in pending:
            field, pending = pending.split(b"\0", 1)
            yield field.decode()
        chunk = os.read(stream, 65536)
        if not chunk:
            return
        pending += chunk


class Reader:
    """Runs a page's blocks in its scratch folder and records what each command did."""

    def __init__(self, scratch: Path, capfd):
        self.scratch, self.capfd, self.log = scratch, capfd, []

    @staticmethod
    def call(program: str, args: list[str]) -> int:
        """A vaelab command, `python -m <module>` or `python scripts/<name>.py`, in this process."""
        program = {f"vaelab.{p}": p for p in COMMANDS.values()}.get(program, program)
        if program in COMMANDS.values():
            main = importlib.import_module(f"vaelab.{program}").main
            return console(main, quick(program, args))
        if program == "script":
            return console(entry_point(args[0]), args[1:])
        return console(entry_point(program), args)

    # -- placeholders
    def newest_run(self, model: str = "") -> str:
        """The newest finished training run (of `model=<model>`); one is trained if none is."""
        runs = [
            r.parent
            for r in sorted((self.scratch / "logs/train/runs").glob("*/results.json"))
            if not model or model in chosen(r.parent, "model", "data", "experiment")
        ]
        if not runs:
            assert not model or (CONF / "model" / f"{model}.yaml").is_file(), f"no {model} run"
            args = [f"model={model}"] if model else []
            env = dict(os.environ, HOME=str(self.scratch))
            assert self.run_here("train", args, self.scratch, env) == 0, self.log[-1]
            return self.newest_run(model)
        return runs[-1].name

    def fill(self, text: str) -> str:
        def run(match: re.Match) -> str:
            return f"logs/train/runs/{self.newest_run((match.group(1) or '').lower())}"

        return DEFERRED.sub(run, PLACEHOLDER.sub(deferred, text))

    # -- commands
    def run_here(self, program: str, args: list[str], cwd: Path, env: dict) -> int:
        saved_env, saved_path = dict(os.environ), sys.path[:]
        before = set(sys.modules)
        os.environ.clear()
        os.environ.update(env)
        sys.path[:0] = [str(cwd / p) for p in env.get("PYTHONPATH", "").split(":") if p]
        try:
            with console_here(cwd):
                status = self.call(program, args)
        finally:
            os.environ.clear()
            os.environ.update(saved_env)
            sys.path[:] = saved_path
            for name in set(sys.modules) - before:  # the page's own modules (my_models)
                module = sys.modules[name]
                if str(getattr(module, "__file__", "") or "").startswith(str(self.scratch)):
                    del sys.modules[name]
        out = self.capfd.readouterr()
        self.log.append(f"$ {program} {' '.join(args)}  -> {status}\n{(out.out + out.err)[-3000:]}")
        return status

    def bash(self, block: Block) -> None:
        ask_read, ask_write = os.pipe()
        hear_read, hear_write = os.pipe()
        env = dict(
            os.environ,
            HOME=str(self.scratch),
            VAELAB_DOCS_ASK=str(ask_write),
            VAELAB_DOCS_HEAR=str(hear_read),
            PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        )
        shell = subprocess.Popen(
            ["bash", "-c", SHIM + PLACEHOLDER.sub(deferred, block.text)],
            cwd=self.scratch,
            env=env,
            pass_fds=(ask_write, hear_read),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        os.close(ask_write)
        os.close(hear_read)
        try:
            asked = fields(ask_read)
            for count in asked:
                cwd = Path(next(asked))
                argv = [next(asked) for _ in range(int(count))]
                env = dict(e.split("=", 1) for e in (next(asked) for _ in range(int(next(asked)))))
                # placeholders are filled as the command starts: a run the block trained counts
                argv = [self.fill(arg) for arg in argv]
                status = self.run_here(argv[0], argv[1:], cwd, env)
                os.write(hear_write, f"{status}\n".encode())
        except BaseException:
            shell.kill()  # this side failed: bash would wait for an answer for ever
            raise
        finally:
            os.close(ask_read)
            os.close(hear_write)
        output = shell.stdout.read().decode()
        assert shell.wait() == 0, f"{where(block)} failed:\n{output[-3000:]}\n" + "\n".join(
            self.log[-3:]
        )

    def python(self, block: Block) -> None:
        code = compile(self.fill(block.text), where(block), "exec")
        with console_here(self.scratch):
            exec(code, {"__name__": "__docs__"})

    def transcript(self, block: Block) -> None:
        lines = block.text.splitlines()
        for i, line in enumerate(lines):
            if not line.startswith("$ "):
                continue
            command, _, _ = line[2:].partition("  #")
            words = command.split()
            status = self.run_here(COMMANDS[words[0]], words[1:], self.scratch, dict(os.environ))
            printed = lines[i + 1]
            said = self.log[-1].strip().splitlines()[-1]
            assert status == 1 and said == printed, f"{where(block)}: {command} said\n{said}"


def deferred(match: re.Match) -> str:
    """A placeholder as a word bash passes on as it is (`<run>` is a redirection to bash)."""
    return f"logs/train/runs/@@{match.group(1) or ''}@@"


def chosen(run: Path, *groups: str) -> list[str]:
    """The options a run's config groups were given (Hydra's record of the run)."""
    choices = OmegaConf.load(run / ".hydra/hydra.yaml").hydra.runtime.choices
    return [choices.get(group) for group in groups]


def furnish(scratch: Path, page: str) -> None:
    """The files a reader would have, where the page uses them: data sets in their published
    formats (`~/data`; MNIST in `data/`, where `data.download=true` looks first; more training
    images than the 5,000 validation keeps), tables of cells; the repository's scripts."""
    data = scratch / "data"
    if "cifar10" in page:
        write_cifar_like(data, per_batch=1010)
    if "celeba" in page:
        write_celeba_like(data)
    if "dsprites" in page:
        write_dsprites_like(data / "dsprites", sizes=(1, 3, 2, 10, 14, 14))  # > the 10,000 for test
    if "data=mnist" in page:
        write_mnist_like(data / "MNIST/raw", n_train=5100)
    if "cells.csv" in page:
        counts, kinds, ids = expression_matrix(200)
        write_table(scratch / "cells.csv", counts, kinds, ids)
        write_table(scratch / "new_cells.csv", np.asarray(counts)[:40], None, ids[:40])
    (scratch / "scripts").symlink_to(ROOT / "scripts")
    (scratch / "notebooks").symlink_to(ROOT / "notebooks")


def runnable(page: Path) -> list[Block]:
    return [b for b in blocks(page) if b.language in RUN_LANGUAGES and not b.illustrative]


@pytest.mark.parametrize(
    "page", [p for p in PAGES if runnable(p)], ids=lambda p: str(p.relative_to(ROOT))
)
def test_the_commands_of_a_page_run(page, tmp_path, capfd):
    furnish(tmp_path, page.read_text(encoding="utf-8"))
    reader = Reader(tmp_path, capfd)
    run = {"bash": reader.bash, "python": reader.python, "console": reader.transcript}
    for block in runnable(page):
        run[block.language](block)
