"""The GPU run kit's start (scripts/gpu_check.sh): check that every package the library
needs is installed or carried as a wheel, install the carried ones and this checkout, then hand
over to the measurements (aclaudio.cli.gpu_kit). docs/benchmarks.md tells the whole kit.

Why a script apart from the library: it runs before the library's packages are installed, so it
uses the standard library and `packaging` alone (pip's own copy where it is not installed).

    python scripts/gpu_kit.py --download-line   the `pip download` that makes the wheel folder
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

try:
    from packaging.markers import Marker
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.tags import sys_tags
    from packaging.utils import parse_wheel_filename
    from packaging.version import Version
except ImportError:  # a bare interpreter: pip, which installs the rest, carries a copy
    from pip._vendor.packaging.markers import Marker
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.specifiers import SpecifierSet
    from pip._vendor.packaging.tags import sys_tags
    from pip._vendor.packaging.utils import parse_wheel_filename
    from pip._vendor.packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
#: What a bare GPU machine has (with all they bring in): the rest comes from carried wheels.
BARE = ("torch", "numpy", "scipy", "scikit-learn", "pandas", "tqdm")
#: The machine the documented `pip download` line fetches wheels for.
TARGET = {"python_version": "3.12", "python_full_version": "3.12.0", "sys_platform": "linux"}
TARGET |= {"platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix"}
#: pyproject.toml's extras that the measurements need: data, training, evaluation.
EXTRAS = ("train",)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


class KitError(Exception):
    """What stops the kit before it starts, in one line."""


def normal(name: str) -> str:
    """A project name as pip compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(environment: dict | None = None) -> tuple[dict[str, str], dict[str, set[str]]]:
    """requirements.lock for this interpreter (or `environment`): each package's pinned version,
    and the packages that each one brings in (its `# via` lines read backwards)."""
    pins: dict[str, str] = {}
    brings: dict[str, set[str]] = {}
    current = None
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        text = line.strip()
        if text and not text.startswith("#"):
            pin, _, marker = text.partition(";")
            name, _, version = pin.partition("==")
            applies = not marker.strip() or Marker(marker.strip()).evaluate(environment)
            current = normal(name.strip()) if applies else None
            if current:
                pins[current] = version.strip()
        elif current and (parent := text.lstrip("#").strip().removeprefix("via").split()):
            brings.setdefault(normal(parent[0]), set()).add(current)
    return pins, brings


def needs(*tables: str) -> dict[str, SpecifierSet]:
    """What pyproject.toml asks, with the ranges it allows: "library", the dependencies and
    the EXTRAS that the measurements import; "build", what installs this checkout."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = project["project"].get("optional-dependencies", {})
    lines = {
        "library": project["project"]["dependencies"]
        + [x for e in EXTRAS for x in extras.get(e, [])],
        "build": project["build-system"]["requires"],
    }
    found = [Requirement(line) for table in tables for line in lines[table]]
    return {normal(r.name): r.specifier for r in found if normal(r.name) != "aclaudio"}


def installed_versions() -> dict[str, str]:
    """Every installed distribution's version, the one that imports first where there are two."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        if dist.metadata["Name"]:
            found.setdefault(normal(dist.metadata["Name"]), dist.version)
    return found


def carried(folder: Path) -> dict[str, tuple[str, Path]]:
    """The wheels in `folder` that install on this interpreter: name -> (version, file)."""
    tags = set(sys_tags())
    found = {}
    for path in sorted(folder.glob("*.whl")) if folder.is_dir() else []:
        try:
            name, version, _, wheel_tags = parse_wheel_filename(path.name)
        except ValueError:
            raise KitError(f"{path}: not a wheel's file name") from None
        if tags & wheel_tags:
            found[normal(name)] = (str(version), path)
    return found


@dataclass
class Plan:
    wheels: list[Path] = field(default_factory=list)  # carried wheels to install
    mismatches: list[str] = field(default_factory=list)  # installed, in range, not the lock's
    missing: list[str] = field(default_factory=list)  # neither installed nor carried


def plan_install(installed: dict[str, str], folder: Path, environment=None) -> Plan:
    """What to install from `folder`: each package the kit needs that is not installed at a
    version in range, at the lock's version, and what it brings in, by the lock. An installed
    package is kept as it is (its own needs came with it); one that differs from the lock is
    noted."""
    pins, brings = read_lock(environment)
    ranges, wheels, plan = needs("library", "build"), carried(folder), Plan()
    queue, seen = list(ranges), set()
    while queue:
        name = queue.pop(0)
        if name in seen or name not in pins:
            continue
        seen.add(name)
        have = installed.get(name)
        if have is not None and ranges.get(name, SpecifierSet()).contains(have, True):
            if Version(have).public != pins[name]:
                plan.mismatches.append(f"{name} {have} (requirements.lock: {pins[name]})")
            continue
        version, path = wheels.get(name, (None, None))
        if version == pins[name]:
            plan.wheels.append(path)
        else:
            plan.missing.append(f"{name}=={pins[name]}" + (f" ({have} installed)" if have else ""))
        queue.extend(sorted(brings.get(name, ())))
    return plan


def download_line() -> str:
    """The `pip download` that makes the wheel folder for a bare GPU machine (TARGET, BARE),
    run where there is a network; the build backend comes too, in case the machine's is old."""
    pins, brings = read_lock(TARGET)
    have, queue = {}, list(BARE)
    while queue:  # a bare machine: BARE and everything they bring in
        name = queue.pop()
        if name in pins and name not in have:
            have[name] = pins[name]
            queue.extend(brings.get(name, ()))
    wanted = [text.split()[0] for text in plan_install(have, Path(), TARGET).missing]
    wanted += [f"{name}=={pins[name]}" for name in needs("build") if name in have]
    options = " ".join(f"--platform {name}" for name in PLATFORMS)
    return (
        "python3 -m pip download --no-deps --only-binary=:all: --implementation cp "
        f"--python-version {TARGET['python_version']} {options} -d wheels {' '.join(wanted)}"
    )


def install(plan: Plan, site: Path) -> None:
    """The carried wheels and this checkout into `site`, first on the path of every process the
    kit starts. pip --target rather than a virtual environment: where python3 is itself a
    virtual environment (GPU images often ship torch in one), a venv made from it with
    --system-site-packages sees the base interpreter's packages, not torch."""
    paths = [str(site), os.environ.get("PYTHONPATH", "")]
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps"]
    pip += ["--upgrade", "--target", str(site)]
    for what, extra in (("the carried wheels", plan.wheels), ("this checkout", [ROOT])):
        options = ["--no-build-isolation"] if extra == [ROOT] else []  # nothing fetched
        if extra and subprocess.run([*pip, *options, *map(str, extra)]).returncode:
            raise KitError(f"pip could not install {what} into {site} (its error is above)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gpu_check.sh",
        allow_abbrev=False,
        description="The GPU run kit: docs/benchmarks.md. Options other "
        "than these go to the measurements: --device cuda|cpu, --size tiny|full, --out DIR.",
    )
    parser.add_argument("--wheels", type=Path, default=ROOT / "wheels", help="carried wheels")
    parser.add_argument("--work", type=Path, default=ROOT / "build/gpu-kit", help="data, runs")
    parser.add_argument("--download-line", action="store_true", help="print it, and stop")
    args, rest = parser.parse_known_args(argv)
    if args.download_line:
        print(download_line())
        return 0
    work, site = args.work.resolve(), args.work.resolve() / "site"
    sys.path.insert(0, str(site))  # what an earlier run installed counts as installed
    try:
        plan = plan_install(installed_versions(), args.wheels)
        if plan.missing:
            raise KitError(
                f"needed, neither installed nor carried in {args.wheels}: "
                f"{', '.join(plan.missing)} (docs/benchmarks.md: the wheel folder)"
            )
        install(plan, site)
    except KitError as error:
        print(f"gpu_check: {error}", file=sys.stderr)
        return 2
    (work / "logs").mkdir(parents=True, exist_ok=True)
    versions = installed_versions()  # now with what was just installed
    record = {"packages": {name: versions.get(name) for name in needs("library", "build")}}
    record["installed_from_wheels"] = [path.name for path in plan.wheels]
    record["lock_mismatches"] = plan.mismatches
    (work / "logs/environment.json").write_text(json.dumps(record))
    command = [sys.executable, "-m", "aclaudio.cli.gpu_kit", "--work", str(work), *rest]
    os.execv(sys.executable, command)  # the measurements, with `site` first on their path


if __name__ == "__main__":
    sys.exit(main())
