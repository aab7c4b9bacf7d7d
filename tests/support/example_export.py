"""Write the small example export in examples/export/ from the simulated study of the tests.

    python -m tests.support.example_export examples/export

Two participants take part for three days through the real app code (turns, comparisons, labels, the judge,
the record pump and sync) against the scripted model and a collection server on 127.0.0.1; the study is then
exported as CSV. tests/project/test_examples.py checks that the example still has every file and column.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import keyring

from studyapp.server.export import export
from tests.server.live import LiveServer, new_storage, serve
from tests.study.test_simulated_study import Ledger, model_rule, take_part
from tests.support.keyring import MemoryKeyring
from tests.support.scripted_llm import run_scripted_llm
from tests.support.timezone import machine_time_zone

PARTICIPANTS = 2
DAYS = 3


async def simulate(work: Path) -> LiveServer:
    storage, token = new_storage(work / "server.db")
    with serve(storage) as base_url, run_scripted_llm() as llm:
        live = LiveServer(base_url, storage, token)
        llm.set_default(model_rule)
        start = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0)
        for p in range(PARTICIPANTS):
            await take_part(p, live, llm, work / f"participant-{p}.db", start, Ledger(), days=DAYS)
    return live


def main(out: Path) -> None:
    keyring.set_keyring(MemoryKeyring())  # the participants' tokens never reach the OS keyring
    with tempfile.TemporaryDirectory() as tmp, machine_time_zone("UTC"):
        live = asyncio.run(simulate(Path(tmp)))
        # The folder's README.md is written by hand; everything else is the export's.
        readme = (out / "README.md").read_text(encoding="utf-8") if (out / "README.md").exists() else None
        if out.exists():
            shutil.rmtree(out)
        counts = export(live.storage, out, "csv", researcher="examples")
        if readme is not None:
            (out / "README.md").write_text(readme, encoding="utf-8")
        live.storage.close()
    for name, rows in counts.items():
        print(f"{name}: {rows} rows")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "examples/export"))
