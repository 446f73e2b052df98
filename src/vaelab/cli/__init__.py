"""The console scripts: Hydra composes the config, a callback checks it before anything is
written, and errors a user can fix end in one line."""
