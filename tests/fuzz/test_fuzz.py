"""Each atheris fuzz target runs for a few seconds in CI (scripts/fuzz.sh runs them for longer,
also against an ASan/UBSan build of the compiled core)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris", reason="atheris (dev extra) has wheels for Linux x86_64 only")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harnesses import TARGETS  # noqa: E402
from seeds import seeds_for  # noqa: E402

SECONDS = 2


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_fuzz_target_finds_nothing_in_a_short_run(target: str, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, data in enumerate(seeds_for(target)):
        (corpus / f"seed-{i}").write_bytes(data)
    run = subprocess.run(
        [sys.executable, str(HERE / "run.py"), target, f"-max_total_time={SECONDS}", "-rss_limit_mb=2048",
         "-timeout=20", f"-artifact_prefix={tmp_path}/", str(corpus)],
        capture_output=True, text=True, timeout=180,
    )
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-4000:]
    assert "Done " in log and not list(tmp_path.glob("crash-*")), log[-4000:]
    assert "cov: " in log, "no coverage feedback: the instrumentation did not take"
