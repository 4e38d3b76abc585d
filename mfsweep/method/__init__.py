"""The paper as pure torch functions (METHOD.md). Nothing here imports Lightning, Hydra, W&B or the
rest of mfsweep: a reader with METHOD.md open finds each equation once, under the name it uses."""
