"""docs/design.md §1: `gpulens.trainer` imports, and StepMonitor works on plain numbers, with torch (and
orjson)
blocked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.servers import REPO

SCRIPT = """
import sys, json
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'transformers', 'pytorch_lightning', 'lightning',
                                    'prometheus_client', 'orjson'):
            raise ImportError(f'{name} is blocked in this test')
sys.meta_path.insert(0, Blocker())
import gpulens.trainer, gpulens.trainer.health, gpulens.trainer.mfu, gpulens.trainer.sinks
import gpulens.trainer.curves
import gpulens.trainer.adapters
from gpulens.trainer import StepMonitor
m = StepMonitor('j', 't', flops_per_token=10.0, peak_flops=1e9, socket=sys.argv[1] + '/none.sock',
                log_path=sys.argv[1] + '/log.jsonl')
for loss in (2.0, 1.9, float('nan')):
    with m.step(tokens=100) as s:
        s.record(loss=loss, lr=0.1)
with m.phase('eval'):
    pass
m.close()
print(json.dumps({'torch': 'torch' in sys.modules, 'orjson': 'orjson' in sys.modules,
                  'anomalies': [a.kind for a in m.anomalies]}))
"""


def test_trainer_imports_and_reports_without_torch(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == {"torch": False, "orjson": False, "anomalies": ["nan"]}
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    records = [  # written by the standard library's encoder
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}")) for line in lines
    ]
    assert [r["kind"] for r in records] == ["run", "step", "step", "step", "anomaly", "phase", "run"]
    assert [r.get("loss") for r in records if r["kind"] == "step"] == [2.0, 1.9, None]
