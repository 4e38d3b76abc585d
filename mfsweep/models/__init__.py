"""Networks, by `model.name`: the stacked MLP of the vector tasks (`mlp`) and the DiT (`DiT-B/4`, ...).
`check_model` checks a `model` node's keys without building the network."""
from __future__ import annotations

from typing import Any, Callable, Mapping

from mfsweep.method.errors import POSITIVE_INT, ConfigValueError, Number


def _check_mlp(node: Mapping[str, Any]) -> None:
    for key in ("width", "depth"):
        POSITIVE_INT(f"model.{key}", node.get(key))


def _check_dit(node: Mapping[str, Any]) -> None:
    for key in ("depth", "hidden_size", "num_heads", "patch_size"):
        POSITIVE_INT(f"model.{key}", node.get(key))
    Number(low=0.0, low_open=True)("model.mlp_ratio", node.get("mlp_ratio"))
    width, heads = node["hidden_size"], node["num_heads"]
    if width % heads or width % 4:  # attention heads split the width; the 2-D sin-cos embedding needs 4 | width
        raise ConfigValueError("model.hidden_size", f"must be a multiple of 4 and of model.num_heads ({heads}), "
                                                    f"got {width}")


# Each model family's check, by the start of `model.name`.
MODELS: dict[str, Callable[[Mapping[str, Any]], None]] = {"mlp": _check_mlp, "DiT": _check_dit}


def check_model(node: Mapping[str, Any]) -> None:
    """ConfigValueError for the first bad key of the `model` node."""
    name = str(node.get("name"))
    family = next((f for f in MODELS if name.startswith(f)), None)
    if family is None:
        raise ConfigValueError("model.name", f"must name one of the model families {list(MODELS)}, got {name!r}")
    MODELS[family](node)
