"""``import ood_core`` shortens the spin of torch's OpenMP threads (see ``ood_core/__init__.py``), unless the user set
it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

READ = "import os, ood_core; print(os.environ['GOMP_SPINCOUNT'])"


@pytest.mark.parametrize("given, expected", [(None, "10000"), ("123", "123")])
def test_import_sets_a_short_openmp_spin_unless_the_user_chose_one(given, expected):
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    if given is not None:
        env["GOMP_SPINCOUNT"] = given
    out = subprocess.run(
        [sys.executable, "-c", READ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == expected
