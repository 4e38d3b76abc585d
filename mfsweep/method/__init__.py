"""The paper as pure torch functions (docs/method.md). Nothing here imports Lightning, Hydra, W&B or the
rest of mfsweep: a reader with docs/method.md open finds each equation once, under the name it uses."""
