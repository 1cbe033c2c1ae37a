"""Reading and validating a spec (every task kind registered) imports no ``datasets``: it loads
where documents or conversations are opened, so ``difflab validate`` and run start-up skip it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_loading_specs_of_every_task_kind_imports_no_datasets() -> None:
    specs = [ROOT / "experiments" / "quickstart.yaml", ROOT / "experiments" / "chat" / "local-assistant.yaml",
             ROOT / "experiments" / "text" / "owt-mdlm-small.yaml"]
    code = (
        "import sys\nfrom components.spec import load_spec\nimport components.tasks\n"
        f"for path in {[str(p) for p in specs]!r}:\n    load_spec(path, [])\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'datasets'))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
