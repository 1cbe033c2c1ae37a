"""The infra/ manifests: every service bound to all interfaces says what authenticates it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

INFRA = Path(__file__).resolve().parent.parent / "infra"
MANIFESTS = sorted(p for p in INFRA.iterdir() if p.suffix in (".yaml", ".yml"))


def _comment_above(lines: list[str], index: int) -> str:
    """The comment lines directly above ``lines[index]``, joined."""
    block = []
    for line in reversed(lines[:index]):
        if not line.strip().startswith("#"):
            break
        block.append(line)
    return " ".join(block)


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_all_interface_bindings_are_explained(path: Path) -> None:
    text = path.read_text()
    list(yaml.safe_load_all(text))  # the manifest stays valid YAML
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if "0.0.0.0" in line.split("#")[0]:
            comment = (line.partition("#")[2] + " " + _comment_above(lines, i)).lower()
            assert "authentication" in comment, f"{path.name}:{i + 1} binds 0.0.0.0 without a comment on its authentication"


def test_manifests_are_found() -> None:
    assert {p.name for p in MANIFESTS} >= {"rayjob.yaml", "ray-cluster-8gpu.yaml"}
