"""The record of the last apply and the checkpoint between waves, through the pipeline (fakes).

The real-apiserver proofs are in tests/integration/test_apply_history.py and
tests/controller/test_lease_loss.py; these pin the logic: the stricter of the recorded and
the new safety limits refuses a mass deletion even when the last-applied commit is unknown;
the record follows each apply (revision, keys, limits), not a refused or dry run; a
checkpoint that raises between waves stops the apply there, naming what was written.
"""

from __future__ import annotations

from pathlib import Path

import git
import pytest

from reconciler import errors
from reconciler.apply import apply as applying
from reconciler.apply import fake
from reconciler.apply import lease as leases
from reconciler.apply import record as records
from reconciler.controller import pipeline
from reconciler.controller.reasons import Reason
from reconciler.model import documents as docs
from reconciler.model import observed as obs
from reconciler.observe import snapshot, sources

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gitrepo"


class _Cluster:
    def __init__(self, writer: fake.MemoryWriter) -> None:
        self.writer = writer

    def read(self) -> obs.RawObjects:
        text = (EXAMPLE / "observed" / "snapshot.yaml").read_text()
        devices = tuple(dict(o) for o in snapshot.parse(text, "s") if o["kind"] != "ResourceClaim")
        return sources.InMemory(devices + tuple(self.writer.objects.values())).read()


def _run(
    repo: git.Repo,
    writer: fake.MemoryWriter,
    memory: records.Memory | None,
    options: applying.ApplyOptions = applying.ApplyOptions(),
) -> pipeline.Outcome:
    return pipeline.reconcile(
        pipeline.Request(str(repo.working_dir), repo.head.commit.hexsha),
        _Cluster(writer),
        writer,
        options,
        memory=memory,
    )


def test_record_round_trip_and_unreadable_records_are_strict() -> None:
    keys = docs.CommitSigning(ssh_allowed_signers=["a@x ssh-ed25519 AAAA"])
    record = records.Record("a" * 40, keys, docs.SafetyPolicy(max_delete_fraction=0.2))
    assert records.parse(records.to_annotations(record)) == record
    assert records.parse({}) is None
    broken = records.parse({records.REVISION: "b" * 40, records.SIGNING: "{", records.SAFETY: "x"})
    assert broken is not None
    assert broken.safety == records.STRICTEST
    assert broken.signing == docs.CommitSigning()  # trusts no key


def test_recorded_limits_refuse_a_mass_delete_whatever_the_new_commit_says(
    example_repo: git.Repo,
) -> None:
    repo, root = example_repo, Path(example_repo.working_dir)
    writer, memory = fake.MemoryWriter(), records.InMemory()
    assert _run(repo, writer, memory).reason is Reason.SUCCEEDED
    assert memory.record is not None
    assert memory.record.revision == repo.head.commit.hexsha
    assert memory.record.safety == docs.SafetyPolicy(max_delete_fraction=0.3)
    # Rewrite history: one commit that deletes every pool (and what names them) and lifts
    # the limit.
    for folder in ("pools", "tenants", "claims"):
        for path in (root / folder).rglob("*.yaml"):
            path.unlink()
    policy = root / "policy.yaml"
    policy.write_text(
        policy.read_text().replace("maxDeleteFraction: 0.3", "maxDeleteFraction: 1.0")
    )
    repo.git.add(A=True)
    repo.git.commit("-q", "--amend", "-m", "rewritten")
    written = writer.writes
    outcome = _run(repo, writer, memory)
    assert outcome.reason is Reason.PLAN_REFUSED, outcome.message
    assert "limits recorded at the last apply: maxDeleteFraction 0.3" in outcome.message
    assert writer.writes == written
    # Without the record (the old commit is gone, nothing in the cluster), it would pass:
    assert _run(repo, fake.MemoryWriter(), None).reason is Reason.SUCCEEDED


def test_a_checkpoint_stops_the_apply_between_waves(example_repo: git.Repo) -> None:
    calls: list[int] = []

    def checkpoint() -> None:
        calls.append(1)
        if len(calls) == 3:
            raise errors.WriterStopped("Lease cu-system/cu-reconciler is held by 'other'")

    writer, memory = fake.MemoryWriter(), records.InMemory()
    outcome = _run(example_repo, writer, memory, applying.ApplyOptions(checkpoint=checkpoint))
    assert outcome.reason is Reason.INTERRUPTED
    assert outcome.applied is not None and outcome.applied.writes == writer.writes > 0
    assert "held by 'other'" in outcome.message
    assert f"{writer.writes} objects written before it" in outcome.message
    assert "stopped before writing" in outcome.message
    assert memory.record is None, "an interrupted apply records nothing"
    assert len(calls) == 3


def test_a_writer_past_the_renew_deadline_sends_nothing() -> None:
    """HeldWriter: the Lease by this process's clock, checked before every write (no I/O)."""
    now = [100.0]
    lease = leases.Lease(None, "me", clock=lambda: now[0])  # type: ignore[arg-type]
    lease._observed = leases.Record("me", 15, "", 0, "1")
    lease.last_renewed = 100.0
    inner = fake.MemoryWriter()
    writer = leases.HeldWriter(inner, lease)
    obj = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q", "namespace": "n"}}
    writer.apply(obj, dry_run=False)
    assert inner.writes == 1
    now[0] += leases.RENEW_DEADLINE  # paused (SIGSTOP) past the deadline
    with pytest.raises(leases.LeaseLostError, match="last renewed by this writer 10s ago"):
        writer.apply(obj, dry_run=False)
    with pytest.raises(leases.LeaseLostError):
        writer.delete(obj, dry_run=False)
    with pytest.raises(leases.LeaseLostError):  # the repair of a hand edit (PUT) too
        writer.replace(obj, dry_run=False)
    writer.apply(obj, dry_run=True)  # a dry run stores nothing: allowed
    assert inner.writes == 1
    lease.last_renewed = now[0]  # renewed, but the apiserver named another holder
    lease._observed = leases.Record("other", 15, "", 1, "2")
    with pytest.raises(leases.LeaseLostError):
        writer.apply(obj, dry_run=False)
