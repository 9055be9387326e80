"""The fit phase of a training run: transformers' Trainer over the tokenized splits.

The model is prepared for its mode (LoRA adapter, head only, or everything), the first window
of each note is tokenized, and the Trainer evaluates per epoch and keeps the best one. With a
probe-fitted head, that head alone competes as an "epoch 0" and is kept when no fine-tuned
epoch beats it on validation. Under torchrun every rank runs this; only the main one gets
the result back.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from sklearn.metrics import f1_score
from transformers import (
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    EvalPrediction,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from healthmon.errors import ConfigError, ModelError
from healthmon.model.loading import head_module_names, new_module_names, quiet_transformers
from healthmon.training.args import TrainArgs, auto_epochs
from healthmon.training.data import Example, Splits, targets_for


@dataclass(frozen=True, eq=False)
class Fit:
    """What the Trainer leaves: the trained model (eval mode) and the record of the run."""

    model: torch.nn.Module
    trainable: int
    epochs_budget: float
    wall_s: float
    samples_per_s: float
    log_history: list[dict[str, Any]]
    best_metric: float | None
    world_size: int
    start_check: dict[str, Any]  # the fitted head against the fine-tune on validation (probe only)


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


class _TokenizedDataset(torch.utils.data.Dataset):
    """Pre-tokenized examples; the collator pads each batch only to its own longest note."""

    def __init__(self, encodings: dict[str, list[Any]], targets: Sequence[Any]) -> None:
        self.encodings = encodings
        self.targets = list(targets)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = {key: values[i] for key, values in self.encodings.items()}
        item["labels"] = self.targets[i]
        return item


def _encode(
    tokenizer: Any, examples: Sequence[Example], labels: Sequence[str], multi_label: bool, max_length: int
) -> _TokenizedDataset:
    # Training sees each note's first window; prediction scores every window (see
    # healthmon.model.classifier), so a label is never pinned on a window that lacks it.
    encodings = tokenizer([e.text for e in examples], truncation=True, max_length=max_length)
    targets = targets_for(examples, labels, multi_label)
    return _TokenizedDataset(dict(encodings), [t.tolist() if multi_label else int(t) for t in targets])


def _prepare_model(model: PreTrainedModel, args: TrainArgs) -> torch.nn.Module:
    if args.mode == "lora":
        from peft import LoraConfig, TaskType, get_peft_model

        config = LoraConfig(
            task_type=TaskType.SEQ_CLS,
            r=args.lora_r,
            lora_alpha=args.lora_alpha,
            lora_dropout=args.lora_dropout,
            target_modules=list(args.lora_target_modules),
            # Parts the base checkpoint did not have (beyond the classifier peft adds itself)
            # are random: they must train and be saved, or a reload would re-randomise them.
            modules_to_save=[n for n in head_module_names(model)
                             if n != "classifier" and n in new_module_names(model)] or None,
        )
        try:
            with quiet_transformers():
                return get_peft_model(model, config)
        except ValueError as exc:
            linear = sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules()
                             if isinstance(m, torch.nn.Linear)})
            raise ConfigError(
                "LoRA target modules that exist in the base model",
                f"lora_target_modules={list(args.lora_target_modules)} ({exc})",
                f"pick from this model's linear layers: {', '.join(linear)}",
            ) from exc
    if args.mode == "head":
        trainable = tuple(f"{name}." for name in head_module_names(model))
        for name, param in model.named_parameters():
            param.requires_grad = name.startswith(trainable)
    return model


def _compute_metrics_fn(multi_label: bool) -> Callable[[EvalPrediction], dict[str, float]]:
    def compute(pred: EvalPrediction) -> dict[str, float]:
        logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
        if multi_label:
            predicted = (logits >= 0).astype(int)
            truth = pred.label_ids.astype(int)
            return {
                "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0)),
                "accuracy": float((predicted == truth).all(axis=1).mean()),
            }
        predicted = logits.argmax(axis=-1)
        return {
            "macro_f1": float(f1_score(pred.label_ids, predicted, average="macro", zero_division=0)),
            "accuracy": float((predicted == pred.label_ids).mean()),
        }

    return compute


class _ProgressCallback(TrainerCallback):
    """Reports training progress (steps done / planned) to a plain function."""

    def __init__(self, report: Callable[[float, str], None]) -> None:
        self.report = report

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003 (Trainer's signature)
        total = max(state.max_steps, 1)
        self.report(min(state.global_step / total, 1.0), f"training step {state.global_step} of {total}")


def _scratch_dir(path: Path) -> str:
    """Create the run's checkpoint folder, with the project's error when the models folder is read-only."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError("a writable models folder", f"{path}: {exc.strerror}",
                         "set HEALTHMON_MODELS_DIR to a writable folder") from exc
    return str(path)


def _training_arguments(args: TrainArgs, scratch: str, epochs: float, *, seed: int, device: torch.device,
                        per_epoch: bool, progress: bool) -> TrainingArguments:
    return TrainingArguments(
        output_dir=scratch,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=max(args.batch_size, 32),
        num_train_epochs=epochs,
        max_steps=args.max_steps,
        learning_rate=args.resolved_learning_rate,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_ratio,
        optim="adamw_torch",
        lr_scheduler_type="linear",
        eval_strategy="epoch" if per_epoch else "no",
        save_strategy="epoch" if per_epoch else "no",
        save_total_limit=1,
        save_only_model=True,
        load_best_model_at_end=per_epoch,
        metric_for_best_model=args.select_by,
        greater_is_better=args.select_by != "loss",
        logging_strategy="steps",
        logging_steps=10,
        report_to="none",
        disable_tqdm=not progress,
        seed=seed,
        use_cpu=device.type == "cpu",
        # gloo is the CPU backend for torchrun; naming it outside torchrun breaks accelerate.
        ddp_backend="gloo" if device.type == "cpu" and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        remove_unused_columns=False,
        train_sampling_strategy="group_by_length",
        dataloader_num_workers=0,
    )


def fit(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    splits: Splits,
    args: TrainArgs,
    *,
    seed: int,
    device: torch.device,
    max_length: int,
    scratch: Path,
    progress: bool,
    on_progress: Callable[[float, str], None] | None,
) -> Fit | None:
    """Fine-tune ``model`` on the splits' training notes, keeping the best epoch on validation.

    Args:
        scratch: the run's checkpoint folder, the same on every torchrun rank; created here and
            removed when the fit ends, whatever happens.

    Returns:
        The fitted model and the run's record; ``None`` on torchrun ranks other than the main one.
    """
    model = _prepare_model(model, args)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    train_set = _encode(tokenizer, splits.train, splits.labels, args.multi_label, max_length)
    val_set = _encode(tokenizer, splits.validation, splits.labels, args.multi_label, max_length)

    epochs = args.epochs if args.epochs is not None else auto_epochs(len(splits.train))
    scratch_dir = _scratch_dir(scratch)
    try:
        per_epoch = args.max_steps < 0
        training_args = _training_arguments(args, scratch_dir, epochs, seed=seed, device=device,
                                            per_epoch=per_epoch, progress=progress)
        callbacks = []
        if per_epoch and args.early_stopping_patience > 0:
            callbacks.append(EarlyStoppingCallback(early_stopping_patience=args.early_stopping_patience))
        if on_progress is not None:
            callbacks.append(_ProgressCallback(on_progress))
        trainer = Trainer(
            model=model,
            args=training_args,
            train_dataset=train_set,
            eval_dataset=val_set,
            data_collator=DataCollatorWithPadding(tokenizer),
            compute_metrics=_compute_metrics_fn(args.multi_label),
            callbacks=callbacks,
        )
        start_metric, start_state = None, None
        if args.head_init == "probe" and per_epoch:
            # The fitted head alone is a candidate too (an "epoch 0"): a fine-tune that never
            # beats its starting point on validation is not kept.
            start_metric = float(trainer.evaluate()[f"eval_{args.select_by}"])
            # Only what training changes, kept on the CPU: a full copy would double GPU memory.
            start_state = {name: parameter.detach().to("cpu", copy=True)
                           for name, parameter in model.named_parameters() if parameter.requires_grad}
        started = time.perf_counter()
        output = trainer.train()
        wall_s = time.perf_counter() - started
        # No rank may delete the shared checkpoint folder while another still reads it.
        trainer.accelerator.wait_for_everyone()
        log_history = list(trainer.state.log_history)
        best_metric = trainer.state.best_metric
        start_check: dict[str, Any] = {}
        if start_metric is not None and start_state is not None:
            best_metric, start_check = _keep_better_start(trainer.model, args.select_by, start_metric, start_state,
                                                          best_metric)
        world = training_args.world_size
    finally:
        if is_main_process():
            shutil.rmtree(scratch_dir, ignore_errors=True)

    if not trainer.is_world_process_zero():
        return None
    return Fit(
        model=trainer.model.eval(),
        trainable=int(trainable),
        epochs_budget=float(epochs),
        wall_s=wall_s,
        samples_per_s=float(output.metrics.get("train_samples_per_second", 0.0)),
        log_history=log_history,
        best_metric=best_metric,
        world_size=world,
        start_check=start_check,
    )


def _keep_better_start(model: torch.nn.Module, select_by: str, start_metric: float,
                       start_state: dict[str, torch.Tensor],
                       best_metric: float | None) -> tuple[float | None, dict[str, Any]]:
    """Put the fitted head's weights back where it beat every fine-tuned epoch on validation.

    Returns:
        The best validation metric of what is kept (the Trainer's, unless the start won),
        and the comparison for the card's ``head_init``.
    """
    fine_tune_value = best_metric if best_metric is not None else start_metric
    start_wins = start_metric < fine_tune_value if select_by == "loss" else start_metric > fine_tune_value
    if start_wins:
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if name in start_state:
                    parameter.copy_(start_state[name])
        best_metric = start_metric
    return best_metric, {f"val_{select_by}": start_metric, "kept_instead_of_fine_tune": start_wins}
