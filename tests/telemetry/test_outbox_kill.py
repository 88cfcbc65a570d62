"""kill -9 while writing: every record committed before the kill is there after a reopen."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from tcu.telemetry.storage.outbox import Outbox

REPO = Path(__file__).resolve().parents[2]

WRITER = textwrap.dedent(
    """
    import sys
    from tcu.telemetry.storage.outbox import Outbox
    from tcu.telemetry.records import Record

    box = Outbox(sys.argv[1], cap=1_000_000)
    epoch = box.start_epoch()
    print("epoch", epoch, flush=True)
    seq = 0
    while True:
        batch = []
        for _ in range(3):
            seq += 1
            batch.append(Record(vin="WDB9066331S123456", epoch=epoch, seq=seq, t_ms=seq,
                                kind="alarm", body={"n": seq}))
        box.append(batch)
        print("committed", seq, flush=True)
    """
)


def _write_until_killed(path: Path, at_least: int) -> tuple[int, int]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    try:
        epoch = int(proc.stdout.readline().split()[1])
        committed = 0
        while committed < at_least:
            line = proc.stdout.readline()
            assert line, "writer died"
            committed = int(line.split()[1])
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    return epoch, committed


def test_sigkill_loses_no_committed_record_and_the_next_boot_is_a_new_epoch(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.sqlite"
    epoch, committed = _write_until_killed(path, at_least=60)
    with Outbox(path) as box:
        held = box.pending(10**6)
        seqs = [r.seq for r in held]
        assert seqs[:committed] == list(range(1, committed + 1))
        assert seqs == list(range(1, len(seqs) + 1)), "whole transactions only, no gaps"
        assert len(seqs) % 3 == 0
        assert all(r.epoch == epoch and r.body["n"] == r.seq for r in held)
        assert box.depth() == len(held)
        assert box.start_epoch() == epoch + 1

    second_epoch, more = _write_until_killed(path, at_least=30)
    assert second_epoch == epoch + 2
    with Outbox(path) as box:
        by_epoch: dict[int, list[int]] = {}
        for r in box.pending(10**6):
            by_epoch.setdefault(r.epoch, []).append(r.seq)
        assert by_epoch[epoch][:committed] == list(range(1, committed + 1))
        assert by_epoch[second_epoch][:more] == list(range(1, more + 1))
