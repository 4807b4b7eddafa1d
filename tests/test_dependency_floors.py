"""Every lower bound in pyproject.toml is a tested one: requirements/floors.txt pins each (`make test-floors` runs the
whole suite on exactly those versions), and the locked environment of CI (requirements/lock.txt) lies inside the
ranges that pyproject.toml promises."""

import pathlib
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = pathlib.Path(__file__).resolve().parent.parent


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(text) for text in project["dependencies"] + project["optional-dependencies"]["dev"]]


def pins(name: str) -> dict[str, Version]:
    found = {}
    for line in (ROOT / "requirements" / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", f"{name}: {line!r} is not an exact pin"
            found[canonicalize_name(requirement.name)] = Version(spec.version)
    return found


def test_floors_pin_exactly_the_lower_bounds():
    floors = pins("floors.txt")
    for requirement in declared():
        lower = [s.version for s in requirement.specifier if s.operator == ">="]
        assert len(lower) == 1, f"{requirement} needs one '>=' lower bound, the version floors.txt tests"
        assert floors.get(canonicalize_name(requirement.name)) == Version(lower[0]), \
            f"requirements/floors.txt must pin {requirement.name}=={lower[0]}, pyproject's lower bound"
        assert requirement.specifier.contains(floors[canonicalize_name(requirement.name)])
    assert set(floors) == {canonicalize_name(r.name) for r in declared()}, "floors.txt pins a package pyproject lacks"


def test_the_lock_lies_inside_the_promised_ranges():
    lock = pins("lock.txt")
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        assert name in lock, f"{requirement.name} is declared in pyproject.toml but not locked"
        assert requirement.specifier.contains(lock[name]), f"lock.txt's {name} {lock[name]} is outside {requirement}"

