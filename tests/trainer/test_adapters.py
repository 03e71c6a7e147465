"""The adapters with the real libraries: a tiny GPT-2 under `transformers.Trainer` and a tiny LightningModule
under `pytorch_lightning.Trainer`, both built locally (no hub downloads), reporting through StepMonitor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gpulens.trainer import StepMonitor


def records(log: Path, kind: str = "step") -> list[dict]:
    return [r for r in map(json.loads, log.read_text().splitlines()) if r["kind"] == kind]


def test_hugging_face_trainer_callback(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    from gpulens.trainer.adapters.hf import GpulensCallback

    assert issubclass(GpulensCallback, transformers.TrainerCallback)
    config = transformers.GPT2Config(vocab_size=64, n_positions=16, n_embd=32, n_layer=1, n_head=2)
    model = transformers.GPT2LMHeadModel(config)
    torch.manual_seed(0)
    ids = torch.randint(0, 64, (32, 16))
    dataset = [{"input_ids": row, "labels": row} for row in ids]
    log = tmp_path / "hf.jsonl"
    monitor = StepMonitor("hf-job", "nlp", socket=tmp_path / "none.sock", log_path=log, env={})
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=6,
        per_device_train_batch_size=4,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = transformers.Trainer(
        model=model,
        args=args,
        train_dataset=dataset,
        callbacks=[GpulensCallback(monitor, tokens_per_step=4 * 16)],
    )
    trainer.train()
    steps = records(log)
    assert [r["step"] for r in steps] == list(range(6))
    assert all(r["tokens"] == 64 and r["step_seconds"] > 0 for r in steps)
    assert all(2.0 < r["loss"] < 6.0 and "lr" in r and "grad_norm" in r for r in steps)  # ln(64) = 4.16


def test_lightning_callback(tmp_path: Path) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    from gpulens.trainer.adapters.lightning import GpulensCallback

    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.emb = torch.nn.Embedding(32, 16)
            self.out = torch.nn.Linear(16, 32)

        def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
            logits = self.out(self.emb(batch[:, :-1]))
            return torch.nn.functional.cross_entropy(logits.reshape(-1, 32), batch[:, 1:].reshape(-1))

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(torch.randint(0, 32, (40, 9)), batch_size=8)
    log = tmp_path / "pl.jsonl"
    monitor = StepMonitor("pl-job", "vision", socket=tmp_path / "none.sock", log_path=log, env={})
    trainer = pl.Trainer(
        max_steps=5,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[GpulensCallback(monitor)],
    )
    trainer.fit(Tiny(), loader)
    steps = records(log)
    assert [r["step"] for r in steps] == list(range(5))
    assert all(r["tokens"] == 8 * 9 and r["lr"] == 0.1 for r in steps)
    assert all(2.5 < r["loss"] < 5.0 for r in steps)  # ln(32) = 3.47
