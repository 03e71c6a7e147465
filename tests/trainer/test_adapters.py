"""The adapters with the real libraries: a tiny GPT-2 under `transformers.Trainer` and a tiny LightningModule
under `pytorch_lightning.Trainer`, both built locally (no hub downloads), reporting through StepMonitor:
their steps, and the phases (setup, checkpoint load and save, evaluation) taken from the frameworks' own
callbacks, a run resumed from a checkpoint as a second attempt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gpulens.trainer import StepMonitor


def records(log: Path, kind: str = "step") -> list[dict]:
    return [r for r in map(json.loads, log.read_text().splitlines()) if r["kind"] == kind]


def phases(log: Path) -> list[tuple[int, str, int]]:
    """(attempt, phase, step) of every phase record, in order; each phase is a real interval."""
    found = records(log, "phase")
    assert all(r["end"] >= r["start"] for r in found)
    return [(r["attempt"], r["phase"], r["step"]) for r in found]


def runs(log: Path) -> list[tuple[int, str]]:
    return [(r["attempt"], r["event"]) for r in records(log, "run")]


def assert_phases_outside_steps(log: Path) -> None:
    """No phase lies inside a step's time: steps and phases share the host clock here (CPU timing)."""
    steps = [(r["ts"] - r["step_seconds"], r["ts"]) for r in records(log)]
    for phase in records(log, "phase"):
        for start, end in steps:
            assert phase["end"] <= start + 1e-3 or phase["start"] >= end - 1e-3, (phase, start, end)


def test_hugging_face_trainer_callback(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    from gpulens.trainer.adapters.hf import GpulensCallback

    assert issubclass(GpulensCallback, transformers.TrainerCallback)
    config = transformers.GPT2Config(vocab_size=64, n_positions=16, n_embd=32, n_layer=1, n_head=2)
    torch.manual_seed(0)
    ids = torch.randint(0, 64, (32, 16))
    dataset = [{"input_ids": row, "labels": row} for row in ids]
    log = tmp_path / "hf.jsonl"

    class NodeLost(RuntimeError):
        pass

    class CrashAt(transformers.TrainerCallback):  # type: ignore[misc]
        def __init__(self, step: int | None) -> None:
            self.step = step

        def on_step_begin(self, args: object, state: object, control: object, **kwargs: object) -> None:
            if state.global_step == self.step:  # type: ignore[attr-defined]
                raise NodeLost(f"lost a node at step {self.step}")

    def train(max_steps: int, attempt: int, resume: bool, crash_at: int | None = None) -> None:
        monitor = StepMonitor(
            "hf-job", "nlp", socket=tmp_path / "none.sock", log_path=log, env={}, attempt=attempt
        )
        args = transformers.TrainingArguments(
            output_dir=str(tmp_path / "out"),
            max_steps=max_steps,
            per_device_train_batch_size=4,
            logging_steps=1,
            report_to=[],
            eval_strategy="steps",
            eval_steps=3,
            save_strategy="steps",
            save_steps=4,
            use_cpu=True,
            disable_tqdm=True,
        )
        trainer = transformers.Trainer(
            model=transformers.GPT2LMHeadModel(config),
            args=args,
            train_dataset=dataset,
            eval_dataset=dataset[:8],
            callbacks=[GpulensCallback(monitor, tokens_per_step=4 * 16), CrashAt(crash_at)],
        )
        try:
            trainer.train(resume_from_checkpoint=resume)
        except NodeLost:
            monitor.close(clean=False)  # what the process's end would do: the records out, no clean end

    train(8, attempt=1, resume=False, crash_at=6)  # saves after 4 steps, crashes as the 7th begins
    train(8, attempt=2, resume=True)  # resumes from the checkpoint of step 4: steps 4 and 5 again
    steps = records(log)
    assert [(r["attempt"], r["step"]) for r in steps] == [(1, i) for i in range(6)] + [
        (2, i) for i in range(4, 8)
    ]
    assert all(r["tokens"] == 64 and r["step_seconds"] > 0 for r in steps)
    assert all(2.0 < r["loss"] < 6.0 and "lr" in r and "grad_norm" in r for r in steps)  # ln(64) = 4.16
    assert phases(log) == [  # (attempt, phase, the next step to run)
        (1, "init", 0),
        (1, "eval", 3),
        (1, "checkpoint_save", 4),
        (1, "eval", 6),
        (2, "checkpoint_load", 4),
        (2, "eval", 6),
        (2, "eval", 8),  # at the end of training: evaluated, then saved
        (2, "checkpoint_save", 8),
    ]
    assert runs(log) == [(1, "start"), (2, "start"), (2, "end")]  # the crashed attempt has no clean end
    assert_phases_outside_steps(log)


def test_lightning_callback(tmp_path: Path) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    from gpulens.trainer.adapters.lightning import GpulensCallback

    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.emb = torch.nn.Embedding(32, 16)
            self.out = torch.nn.Linear(16, 32)

        def loss(self, batch: torch.Tensor) -> torch.Tensor:
            logits = self.out(self.emb(batch[:, :-1]))
            return torch.nn.functional.cross_entropy(logits.reshape(-1, 32), batch[:, 1:].reshape(-1))

        def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
            return self.loss(batch)

        def validation_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
            return self.loss(batch)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    class NodeLost(RuntimeError):
        pass

    class CrashAt(pl.Callback):  # type: ignore[misc]
        def __init__(self, step: int | None) -> None:
            self.step = step

        def on_train_batch_start(self, trainer: object, *args: object) -> None:
            if trainer.global_step == self.step:  # type: ignore[attr-defined]
                raise NodeLost(f"lost a node at step {self.step}")

    torch.manual_seed(0)
    data = torch.randint(0, 32, (40, 9))
    log = tmp_path / "pl.jsonl"
    saved = tmp_path / "ckpt"

    def fit(attempt: int, crash_at: int | None, resume: Path | None) -> None:
        monitor = StepMonitor(
            "pl-job", "vision", socket=tmp_path / "none.sock", log_path=log, env={}, attempt=attempt
        )
        trainer = pl.Trainer(
            max_steps=8,
            accelerator="cpu",
            logger=False,
            val_check_interval=3,
            limit_val_batches=2,
            num_sanity_val_steps=1,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[
                GpulensCallback(monitor),
                CrashAt(crash_at),
                pl.callbacks.ModelCheckpoint(dirpath=saved, every_n_train_steps=2, save_top_k=-1),
            ],
        )
        loader = torch.utils.data.DataLoader(data, batch_size=8)
        try:
            trainer.fit(
                Tiny(), loader, torch.utils.data.DataLoader(data[:16], batch_size=8), ckpt_path=resume
            )
        except NodeLost:
            pass  # the callback has closed the monitor without a clean end (on_exception)

    fit(attempt=1, crash_at=5, resume=None)  # steps 0..4, saves after 2 and 4 steps, fails as step 5 begins
    fit(attempt=2, crash_at=None, resume=saved / "epoch=0-step=4.ckpt")  # steps 4..7
    steps = records(log)
    assert [(r["attempt"], r["step"]) for r in steps] == [(1, i) for i in range(5)] + [
        (2, i) for i in range(4, 8)
    ]
    assert all(r["tokens"] == 8 * 9 and r["lr"] == 0.1 for r in steps)
    assert all(2.5 < r["loss"] < 5.0 for r in steps)  # ln(32) = 3.47
    assert phases(log) == [  # (attempt, phase, the next step to run)
        (1, "init", 0),
        (1, "eval", 0),  # the sanity check
        (1, "checkpoint_save", 2),
        (1, "eval", 3),  # val_check_interval=3 (5 batches an epoch)
        (1, "checkpoint_save", 4),
        (2, "checkpoint_load", 4),  # a resumed fit skips the sanity check
        (2, "checkpoint_save", 6),
        (2, "checkpoint_save", 8),
        (2, "eval", 8),  # the third batch of the second epoch
    ]
    assert runs(log) == [(1, "start"), (2, "start"), (2, "end")]  # the crashed attempt has no clean end
    assert_phases_outside_steps(log)
