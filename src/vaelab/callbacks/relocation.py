"""The checkpoint callbacks of a moved or copied run, pointed at the directory as it is now."""

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from vaelab.runs.resume import relocate


class FollowMovedRun(L.Callback):
    """A ModelCheckpoint saves its paths (best_model_path, last_model_path, best_k_models) in
    every checkpoint, and Lightning restores best_model_path even when the folder has changed:
    a resumed copy would test, and report, the original's best checkpoint. Before they are
    restored, those paths are moved into the callback's folder of now."""

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint):
        states = checkpoint.get("callbacks") or {}
        for callback in trainer.checkpoint_callbacks:
            state = states.get(callback.state_key)
            if not isinstance(callback, ModelCheckpoint) or not state or not callback.dirpath:
                continue
            old = state.get("dirpath")
            if isinstance(old, str) and old and old != callback.dirpath:
                states[callback.state_key] = relocate(state, old, callback.dirpath)
