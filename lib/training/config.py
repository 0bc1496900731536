"""Run configurations: plain dataclasses, profiles, overrides, and the hash that names a run.

A profile (profiles.py) fixes every setting of one scale of the study: `smoke` (seconds, tests),
`cpu` (the built-in dataset on two CPU cores) and `paper` (FSDnoisy18k with the authors'
settings: docs/protocol.md).
Overrides come from Python (`profile_config(..., alpha=0.3)`, or `dataclasses.replace` with
the config's own fields) or from the command line (`--set alpha=0.3 --set margin=0.25`).

A run's objective is named (`objective`, nn.objectives.OBJECTIVES) and its settings are the
objective's own dataclass (`loss`): `loss.alpha` on the command line, or plain `alpha` where
the objective has such a setting, in profile_config, make_config and --set alike. Config files
of runs made before the objectives had names (flat alpha, margin, ..., and the authors' views
and backgrounds as the only choice) still load.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from aclaudio.nn import objectives
from aclaudio.nn.augment import AugmentConfig
from aclaudio.training.profiles import PROFILES

# Fields that change how a run executes but not what it computes: left out of its hash.
NOT_HASHED = frozenset({"device", "compile"})
#: Bounds of RANGES that read "positive" and "below 1".
POSITIVE, BELOW_ONE = 1e-12, 1 - 1e-12


@dataclass(frozen=True)
class Execution:
    """How a run executes (device and speed settings), shared by every kind of run.

    Every config checks its values when it is made (the type of each field's default, and the
    bounds in RANGES): a wrong value fails in one line, before anything is trained or written.
    """

    #: field -> (lowest, highest) allowed value, None for no bound, for the settings of these
    #: names that a kind of run has; subclasses add theirs
    RANGES: ClassVar[dict[str, tuple[float | None, float | None]]] = {
        "seed": (0, None),
        "epochs": (0, None),
        "batch_size": (1, None),
        "lr": (POSITIVE, None),
        "momentum": (0, 1),
        "weight_decay": (0, None),
        "lr_gamma": (POSITIVE, 1),
    }

    device: str = "auto"
    amp: bool = True  # bfloat16 autocast where the device supports it
    channels_last: bool = True
    compile: bool = False

    def __post_init__(self) -> None:
        bounds = {
            k: v
            for cls in reversed(type(self).__mro__)
            for k, v in vars(cls).get("RANGES", {}).items()
        }
        for f in fields(self):
            value = getattr(self, f.name)
            if f.default is not dataclasses.MISSING and f.default is not None:
                _check_type(f.name, value, f.default)
                if isinstance(f.default, float):  # 1 and 1.0 are one setting, one run
                    object.__setattr__(self, f.name, float(value))
            if f.name in bounds:
                _check_bounds(f.name, value, *bounds[f.name])


@dataclass(frozen=True)
class DataRun(Execution):
    """A run trained from a dataset: its profile, data folder, seed and feature preset."""

    profile: str = "cpu"
    data_dir: str = ""
    seed: int = 0
    preset: str = "cpu"


MONITORS = ("patch_vote_z", "clip_mean_h", "last")


@dataclass(frozen=True)
class PretrainConfig(DataRun):
    """Self-supervised pretraining followed by linear evaluation (docs/protocol.md)."""

    objective_inputs: ClassVar[str] = "views"  # the objectives it takes (nn.objectives)
    RANGES: ClassVar = {"steps": (0, None), "knn_k": (1, None), "knn_every": (1, None)}

    subset: str = "noisy"  # pretraining clips (labels ignored)
    monitor_subset: str = "clean"  # kNN monitor and probe selection
    # model
    encoder: str = "small"
    projection: bool = True
    # the objective of two views (ACL = alpha * NT-Xent(z) + (1 - alpha) * angular margin(h))
    # and its settings (None: its defaults)
    objective: str = "acl"
    loss: Any = None
    # optimisation; with steps > 0 a run makes exactly that many SGD steps whatever the size of
    # its dataset, in as many epochs as they need, the last one cut short (epoch_steps in
    # recipes/pretrain.py)
    epochs: int = 30
    steps: int = 0
    batch_size: int = 128
    lr: float = 0.03
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_milestones: tuple[int, ...] = ()  # epochs, with or without a step budget
    lr_gamma: float = 0.1
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # monitoring: which checkpoint is evaluated (patch_vote_z | clip_mean_h | last); both kNN
    # scores are logged every knn_every epochs whichever it is
    monitor: str = "patch_vote_z"
    knn_k: int = 200
    knn_every: int = 1
    # the whole model saved after these steps (at the end of the epoch that reaches each), for
    # probe.curve: accuracy against training length in one run
    snapshot_steps: tuple[int, ...] = ()
    # evaluation patches (kNN monitor, linear evaluation, embeddings, fine-tuning): every
    # eval_hop frames while they fit, as the authors'; True adds one aligned to the clip's end
    eval_end_patch: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        _resolve_loss(self)
        if self.monitor not in MONITORS:
            raise ValueError(f"monitor must be one of {', '.join(MONITORS)}; got {self.monitor!r}")
        if self.steps < 0 or (self.epochs == 0 and self.steps):
            raise ValueError(
                f"steps must be 0 (epochs decide) or positive, and 0 with epochs = 0 (no "
                f"training, the random-init run); got steps={self.steps}, epochs={self.epochs}"
            )


@dataclass(frozen=True)
class SupervisedConfig(DataRun):
    """The supervised baseline CNN with cross-entropy or supervised ACL (docs/protocol.md)."""

    objective_inputs: ClassVar[str] = "labels"
    # raised when the same settings come to compute otherwise, so that stored runs train again
    # (config_hash); 1: the authors' normalisation, training patches and initialisation
    REVISION: ClassVar[int] = 1
    RANGES: ClassVar = {
        "val_fraction": (POSITIVE, BELOW_ONE),
        "plateau_factor": (POSITIVE, BELOW_ONE),
        "plateau_patience": (0, None),
        "train_hop": (1, None),
    }

    subset: str = "clean"  # clean | noisy | noisy_small | all
    val_fraction: float = 0.15
    # the objective of a labelled batch (supervised ACL = alpha * CE + (1 - alpha) * angular
    # margin on the pooled conv3 feature; alpha = 1 is cross-entropy) and its settings
    objective: str = "supervised_acl"
    loss: Any = None
    # optimisation
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-3
    plateau_factor: float = 0.5
    plateau_patience: int = 5
    train_hop: int = 50  # patches of the training clips, each inheriting the clip's label
    # test: non-overlapping patches, a remainder shorter than a patch dropped (the authors'); True
    # adds a patch aligned to the clip's end (as eval_end_patch does in self-supervised runs)
    test_end_patch: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        _resolve_loss(self)


@dataclass(frozen=True)
class FinetuneConfig(Execution):
    """Fine-tuning all layers of a pretrained encoder with a linear classifier (cross-entropy on
    the pretraining subset's labels, SGD with the rate x lr_gamma after each of lr_milestones,
    the epoch of best balanced accuracy on the monitor subset tested)."""

    pretrain_run: str = ""  # folder of the pretraining run
    seed: int = 0
    # the shape of the authors' recipe (the paper profile's): steps after 40 % and 80 % of it
    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_milestones: tuple[int, ...] = (12, 24)  # epochs
    lr_gamma: float = 0.1


KINDS = {"pretrain": PretrainConfig, "supervised": SupervisedConfig, "finetune": FinetuneConfig}


def profile_config(kind: str, profile: str, **overrides: Any):
    """The config of `kind` for a profile, with overrides applied (a fine-tuning's profile is
    its pretraining run's: not a setting of its own)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    named = {"profile": profile} if issubclass(KINDS.get(kind, object), DataRun) else {}
    return make_config(kind, **named | PROFILES[profile][kind] | overrides)


def make_config(kind: str, **values: Any):
    """Build a config from plain values (as read back from config.json or the CLI); a setting
    of the objective may be given by its plain name (alpha=0.3)."""
    cls = KINDS.get(kind)
    if cls is None:
        raise ValueError(f"unknown run kind {kind!r}; choose one of {', '.join(KINDS)}")
    names = {f.name for f in fields(cls)}
    if "objective" in names:
        values = _loss_settings_gathered(cls, _without_former_switches(values))
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(
            f"unknown {kind} setting(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}"
            + (_objective_settings(cls, values) if "objective" in names else "")
        )
    if isinstance(values.get("augment"), dict):
        values["augment"] = AugmentConfig(**_tuples(values["augment"]))
    return cls(**_tuples(values))


def with_overrides(config, pairs: list[str]):
    """Apply `key=value` strings (`augment.noise=0` reaches the augmentation settings, `alpha=0.3`
    or `loss.alpha=0.3` the objective's; a new `objective=NAME` starts from its defaults).

    Values are read as JSON where they parse (numbers, booleans, lists) and checked against the
    type of the setting they replace, so a typo fails here rather than deep inside training.
    """
    chosen = [p for p in pairs if p.partition("=")[0].strip() == "objective"]
    if chosen and hasattr(config, "objective"):
        name = chosen[-1].partition("=")[2].strip()
        if name != config.objective:
            config = dataclasses.replace(config, objective=name, loss=None)
        pairs = [p for p in pairs if p not in chosen]
    current = settable(config)
    changes: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if key not in current and f"loss.{key}" in current:
            key = f"loss.{key}"
        if not sep or key not in current:
            known = ", ".join(sorted(current))
            raise ValueError(f"--set {pair!r}: unknown setting {key!r}; known: {known}")
        value = _coerce(text.strip(), current[key], key)
        group, dot, name = key.partition(".")
        if dot:
            nested.setdefault(group, {})[name] = value
        else:
            changes[key] = value
    for group, values in nested.items():
        changes[group] = dataclasses.replace(getattr(config, group), **values)
    return dataclasses.replace(config, **changes)


def settable(config) -> dict[str, Any]:
    """Every key `--set` accepts for this config, in declaration order, with its current value;
    nested settings (the augmentation) as `augment.<name>`."""
    values = {}
    for f in fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            values.update({f"{f.name}.{f2.name}": getattr(value, f2.name) for f2 in fields(value)})
        else:
            values[f.name] = value
    return values


def setting_text(value: Any) -> str:
    """A value as `--set` reads it back (the inverse of _coerce): strings as they are, anything
    else as compact JSON (no spaces: one word on a command line)."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _coerce(text: str, current: Any, key: str) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    if isinstance(current, bool):
        ok = isinstance(value, bool)
    elif isinstance(current, int | float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and isinstance(current, float):
            value = float(value)  # "1" is a fine learning rate; 0.5 epochs is not
    elif isinstance(current, tuple):
        ok = isinstance(value, list)
        value = tuple(value) if ok else value
    else:
        ok, value = True, text
    if not ok or type(value) is not type(current):
        raise ValueError(f"--set {key}: expected {type(current).__name__}, got {text!r}")
    return value


def config_dict(config) -> dict[str, Any]:
    """Plain JSON-able values of a config (nested augment settings included)."""
    return dataclasses.asdict(config)


def config_hash(config) -> str:
    """Twelve hex digits naming a run: the hash of everything that changes its result."""
    values = {k: v for k, v in config_dict(config).items() if k not in NOT_HASHED}
    values["kind"] = kind_of(config)
    if getattr(config, "REVISION", 0):  # a kind's protocol revision, where it has one
        values["revision"] = config.REVISION
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:12]


def kind_of(config) -> str:
    return next(kind for kind, cls in KINDS.items() if isinstance(config, cls))


def _check_type(name: str, value: Any, default: Any) -> None:
    """value of the type of the field's default (an int is a fine float; a bool no number)."""
    expected = type(default)
    ok = isinstance(value, expected) and not (isinstance(value, bool) and expected is not bool)
    if expected is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok:
        raise ValueError(f"{name} must be {expected.__name__}, got {value!r}")


def _check_bounds(name: str, value: float, low: float | None, high: float | None) -> None:
    if (low is not None and value < low) or (high is not None and value > high):
        words = {POSITIVE: "positive", BELOW_ONE: "below 1"}
        at_least = words.get(low, f"at least {low:g}") if low is not None else ""
        at_most = words.get(high, f"at most {high:g}") if high is not None else ""
        raise ValueError(
            f"{name} must be {' and '.join(filter(None, (at_least, at_most)))}, got {value!r}"
        )


def _resolve_loss(config) -> None:
    """The objective's settings as its dataclass (a frozen config is set once, here)."""
    settings = objectives.settings(config.objective, config.objective_inputs, config.loss)
    object.__setattr__(config, "loss", settings)


#: Switches that configs once had, with the one value every run now has (the authors'): each
#: view through the model on its own, mix-back backgrounds from the whole training set.
FORMER_SWITCHES = {"views_apart": True, "background": "training_set"}


def _without_former_switches(values: dict[str, Any]) -> dict[str, Any]:
    """values without FORMER_SWITCHES at their one value (an older config.json); any other value
    is a ValueError: that choice is gone."""
    for name, kept in FORMER_SWITCHES.items():
        if name in values and values[name] != kept:
            raise ValueError(
                f"{name}={values[name]!r} is no longer a choice: every run uses {name}={kept!r}, "
                "the authors' (docs/protocol.md)"
            )
    return {k: v for k, v in values.items() if k not in FORMER_SWITCHES}


def _loss_settings_gathered(cls, values: dict[str, Any]) -> dict[str, Any]:
    """values with the objective's settings given by plain name moved into `loss`."""
    known = objectives.get(*_objective_of(cls, values)).Settings
    plain = {f.name for f in dataclasses.fields(known)} & set(values)
    if not plain:
        return values
    loss = values.get("loss") or {}
    loss = dataclasses.asdict(loss) if dataclasses.is_dataclass(loss) else dict(loss)
    rest = {k: v for k, v in values.items() if k not in plain}
    return rest | {"loss": loss | {k: values[k] for k in plain}}


def _objective_of(cls, values: dict[str, Any]) -> tuple[str, str]:
    """The objective named in values (else the config's default) and the inputs it takes."""
    default = next(f.default for f in fields(cls) if f.name == "objective")
    return values.get("objective", default), cls.objective_inputs


def _objective_settings(cls, values: dict[str, Any]) -> str:
    """What the chosen objective takes, for an error about settings it does not have."""
    name, inputs = _objective_of(cls, values)
    taken = [f.name for f in dataclasses.fields(objectives.get(name, inputs).Settings)]
    return f"; objective {name!r} takes {', '.join(taken) or 'no setting'}"


def config_row(config) -> dict[str, Any]:
    """A config as one row of a table: its plain values, the objective's settings as columns of
    their own (alpha, margin, ...) beside `objective`."""
    row = config_dict(config)
    return row | (row.pop("loss") or {}) if "loss" in row else row


def _tuples(values: dict[str, Any]) -> dict[str, Any]:
    """JSON has no tuples: turn lists back into tuples so configs compare and hash alike."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
