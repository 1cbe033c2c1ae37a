"""The experiment spec: pydantic models of the YAML, loading, overrides and the content hash."""

from components.spec.errors import Problem, SpecError
from components.spec.loading import ResolvedSpec, canonical_hash, load_spec, validate
from components.spec.model import Spec
from components.spec.trials import sweep_problems, trial_spec

__all__ = [
    "Problem",
    "ResolvedSpec",
    "Spec",
    "SpecError",
    "canonical_hash",
    "load_spec",
    "sweep_problems",
    "trial_spec",
    "validate",
]
