"""Where browser tests write their screenshots (git-ignored)."""

from pathlib import Path

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
