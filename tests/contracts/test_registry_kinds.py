"""Every registered kind of every family has an example in the contracts table, and every example
reads from YAML, round-trips through its registry and is accepted by the Spec next to compatible
sections (picked by the Spec's own cross-section checks)."""

from __future__ import annotations

import pytest
import yaml
from contract_examples import EXAMPLES, SPEC_SECTION, partners, registries, spec_with

from components.spec import validate

ALL = [(family, kind) for family, kinds in EXAMPLES.items() for kind in kinds]


def test_every_registry_has_a_table_and_every_kind_an_example() -> None:
    found = registries()
    assert set(found) == set(EXAMPLES) == set(SPEC_SECTION)
    for family, registry in found.items():
        assert set(registry.kinds) == set(EXAMPLES[family]), family


@pytest.mark.parametrize(("family", "kind"), ALL, ids=[f"{f}-{k}" for f, k in ALL])
def test_example_reads_from_yaml_and_round_trips(family: str, kind: str) -> None:
    registry = registries()[family]
    config = registry.validate(yaml.safe_load(yaml.safe_dump(EXAMPLES[family][kind])))
    assert config.kind == kind
    assert registry.validate(config.model_dump(mode="json")) == config


@pytest.mark.parametrize(("family", "kind"), ALL, ids=[f"{f}-{k}" for f, k in ALL])
def test_the_spec_accepts_the_example_with_compatible_sections(family: str, kind: str) -> None:
    sections = {}
    if family in ("noise", "losses", "backbones", "samplers"):
        picked = partners(family, kind)
        sections = {SPEC_SECTION[fam]: EXAMPLES[fam][picked[SPEC_SECTION[fam]]] for fam in ("noise", "losses", "backbones", "samplers")}
    sections[SPEC_SECTION[family]] = EXAMPLES[family][kind]
    resolved = validate(spec_with(**sections))
    assert validate(resolved.to_dict()).hash == resolved.hash
