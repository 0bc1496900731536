"""The study's losses for your own code: `from aclaudio import losses`.

Functions (tensors in, a scalar out): nt_xent, angular_margin, acl, supervised_acl, supcon,
margin_nt_xent (NT-Xent with ArcFace's or CosFace's margin), vicreg. The same as torch modules,
settings in the constructor: NTXent, AngularMargin, ACL, SupervisedACL, SupCon, ArcFaceNTXent,
CosFaceNTXent, VICReg; `ACL(...).terms(...)` gives the weighted terms apart. They live in
aclaudio.nn.objectives, one module each.

Example:
    >>> from aclaudio import losses
    >>> loss = losses.acl(h1, h2, z1, z2, alpha=0.3, margin=0.5)
"""

from aclaudio.nn.objectives import (
    ACL,
    AngularMargin,
    ArcFaceNTXent,
    CosFaceNTXent,
    NTXent,
    SupCon,
    SupervisedACL,
    VICReg,
    acl,
    angular_margin,
    margin_nt_xent,
    nt_xent,
    supcon,
    supervised_acl,
    vicreg,
)

__all__ = [
    "ACL",
    "AngularMargin",
    "ArcFaceNTXent",
    "CosFaceNTXent",
    "NTXent",
    "SupCon",
    "SupervisedACL",
    "VICReg",
    "acl",
    "angular_margin",
    "margin_nt_xent",
    "nt_xent",
    "supcon",
    "supervised_acl",
    "vicreg",
]
