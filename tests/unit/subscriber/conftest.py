"""The example subscriber (examples/stats-projector) is not installed in the workspace: its
package is imported from its folder, as its README's "run from a checkout" does."""

import sys
from pathlib import Path

PROJECTOR = Path(__file__).resolve().parents[3] / "examples" / "stats-projector"
if str(PROJECTOR) not in sys.path:
    sys.path.insert(0, str(PROJECTOR))
