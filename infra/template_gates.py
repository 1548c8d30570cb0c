"""The merged templates' static gates (`make lint-template`, part of `make lint`).

``build --stage S``: the stage's merged template (what `make package` writes as sam.json, by the same
code: infra/package.py) into build/lint/<stage>/, without the layers (they do not change the template).
The Makefile rebuilds it only when an input changed (dev 21 s, prod 12 s measured from a fresh clone,
most of it `chalice package`).

``resources S...``: each stage's resource list (logical id and type, before the SAM transform) against
the checked-in infra/lint/resources-<stage>.txt, so a resource that appears or disappears is a reviewed
change: ``--write`` rewrites the lists after such a change.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from infra.deploy import DEPLOYABLE_STAGES, REPO_ROOT

LINT_BUILD = REPO_ROOT / "build" / "lint"
EXPECTED_DIR = REPO_ROOT / "infra" / "lint"
TEMPLATE_NAME = "sam.json"


def template_path(stage: str) -> Path:
    return LINT_BUILD / stage / TEMPLATE_NAME


def expected_path(stage: str) -> Path:
    return EXPECTED_DIR / f"resources-{stage}.txt"


def resource_lines(template: dict[str, object]) -> list[str]:
    """``<logical id> <type>`` of every resource, sorted."""
    resources = template.get("Resources", {})
    if not isinstance(resources, dict):
        raise TypeError("a template's Resources is a mapping")
    return sorted(f"{logical_id} {resource['Type']}" for logical_id, resource in resources.items())


def compare(stage: str) -> list[str]:
    """The differences between the stage's merged template and its expected list (empty: equal)."""
    actual = set(resource_lines(json.loads(template_path(stage).read_text())))
    expected_file = expected_path(stage)
    expected = {line.strip() for line in expected_file.read_text().splitlines() if line.strip()}
    return [f"+ {line} (in the template, not in {expected_file.name})" for line in sorted(actual - expected)] + [
        f"- {line} (in {expected_file.name}, not in the template)" for line in sorted(expected - actual)
    ]


def build(stage: str) -> Path:
    from infra import package

    package.build_package(stage, LINT_BUILD / stage, layers=False)
    return template_path(stage)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    build_parser = commands.add_parser("build", help="write build/lint/<stage>/sam.json")
    build_parser.add_argument("--stage", required=True, choices=DEPLOYABLE_STAGES)
    resources_parser = commands.add_parser("resources", help="compare the resource lists")
    resources_parser.add_argument("stages", nargs="+", choices=DEPLOYABLE_STAGES)
    resources_parser.add_argument("--write", action="store_true", help="rewrite infra/lint/resources-<stage>.txt")
    args = parser.parse_args(argv)
    if args.command == "build":
        print(build(args.stage).relative_to(REPO_ROOT))
        return 0
    failed = False
    for stage in args.stages:
        if args.write:
            lines = resource_lines(json.loads(template_path(stage).read_text()))
            expected_path(stage).write_text("\n".join(lines) + "\n")
            print(f"{expected_path(stage).relative_to(REPO_ROOT)}: {len(lines)} resources")
            continue
        differences = compare(stage)
        if differences:
            failed = True
            print(f"{stage}: the merged template's resources differ from the expected list:", *differences, sep="\n  ")
        else:
            print(f"{stage}: the merged template's resources match {expected_path(stage).name}")
    if failed:
        print("A reviewed change? `python -m infra.template_gates resources --write dev prod`", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
