"""Import paths for the contract tests: the repository root (``tools.eventdocs``, also when
pytest is not run as ``python -m pytest`` from the root), the example subscriber
(examples/stats-projector, not installed in the workspace) and this folder's helper module
(producer_contract)."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECTOR = HERE.parents[1] / "examples" / "stats-projector"
for path in (HERE.parents[1], PROJECTOR, HERE):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
