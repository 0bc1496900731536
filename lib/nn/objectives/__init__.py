"""The objectives, chosen by name as encoders are (a run's config names one and its settings).

Each objective is one module here: a torch module whose constructor takes its settings (a
dataclass with defaults) and whose `terms` returns its loss as named terms, so that trainers
log the gradient each term puts on the encoder. "views" objectives train the self-supervised
encoder on two views, "labels" objectives the supervised networks. A new method is one new
module, its test and a line in OBJECTIVES (the loss functions of the modules are here too).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from aclaudio.nn.objectives.acl import ACL, acl
from aclaudio.nn.objectives.angular import AngularMargin, angular_margin
from aclaudio.nn.objectives.base import Objective, check_settings
from aclaudio.nn.objectives.cross_entropy import CrossEntropy
from aclaudio.nn.objectives.margin_ntxent import ArcFaceNTXent, CosFaceNTXent, margin_nt_xent
from aclaudio.nn.objectives.ntxent import NTXent, nt_xent
from aclaudio.nn.objectives.supcon import SupCon, supcon
from aclaudio.nn.objectives.supervised_acl import SupervisedACL, supervised_acl
from aclaudio.nn.objectives.vicreg import VICReg, vicreg

OBJECTIVES: dict[str, type[Objective]] = {
    "ntxent": NTXent,
    "acl": ACL,
    "angular_margin": AngularMargin,
    "ntxent_arcface": ArcFaceNTXent,
    "ntxent_cosface": CosFaceNTXent,
    "vicreg": VICReg,
    "supervised_acl": SupervisedACL,
    "cross_entropy": CrossEntropy,
    "supcon": SupCon,
}


def get(name: str, inputs: str) -> type[Objective]:
    """The objective `name`, which must take `inputs` ("views" or "labels")."""
    choices = [key for key, cls in OBJECTIVES.items() if cls.inputs == inputs]
    if name not in choices:
        raise ValueError(f"unknown objective {name!r} here; choose one of {', '.join(choices)}")
    return OBJECTIVES[name]


def settings(name: str, inputs: str, values: Any = None):
    """The settings of objective `name` as its Settings dataclass: from a dict (as read back
    from config.json), from Settings itself, or its defaults for None."""
    cls = get(name, inputs)
    if isinstance(values, cls.Settings):
        check_settings(values)  # dataclasses.replace builds Settings without settings_from
        return values
    if dataclasses.is_dataclass(values):
        raise ValueError(
            f"settings of {type(values).__qualname__.split('.')[0]} given to objective {name!r}"
        )
    return cls.settings_from({} if values is None else values)


def build(name: str, inputs: str, values: Any = None, *, gather: bool = False) -> Objective:
    """The objective `name` with these settings (see `settings`)."""
    chosen = settings(name, inputs, values)
    return get(name, inputs)(gather=gather, **dataclasses.asdict(chosen))


__all__ = [
    "ACL",
    "OBJECTIVES",
    "AngularMargin",
    "ArcFaceNTXent",
    "CosFaceNTXent",
    "CrossEntropy",
    "NTXent",
    "Objective",
    "SupCon",
    "SupervisedACL",
    "VICReg",
    "acl",
    "angular_margin",
    "build",
    "get",
    "margin_nt_xent",
    "nt_xent",
    "settings",
    "supcon",
    "supervised_acl",
    "vicreg",
]
