"""The fit phase of a training run: transformers' Trainer over the tokenized splits.

The model is prepared for its mode (LoRA adapter, head only, or everything), the first window
of each note is tokenized, and the Trainer evaluates per epoch and keeps the best one. The run
stops when a smoothed validation metric stops improving, when the time budget is spent, or
after the planned epochs, and says which. With a probe-fitted head, that head alone competes as
an "epoch 0" and is kept when no fine-tuned epoch beats it on validation. Under torchrun every
rank runs this; only the main one gets the result back.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from sklearn.metrics import f1_score
from transformers import (
    DataCollatorWithPadding,
    EvalPrediction,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from healthmon.errors import ConfigError, ModelError
from healthmon.model.device import bf16_is_fast
from healthmon.model.loading import head_module_names, new_module_names, quiet_transformers
from healthmon.training.args import TrainArgs
from healthmon.training.data import Example, Splits, targets_for
from healthmon.training.regression import regression_loss, regression_metrics_fn, standardised_targets


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
    stopped_by: str = ""


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


def _datasets(tokenizer: Any, splits: Splits, args: TrainArgs,
              max_length: int) -> tuple[_TokenizedDataset, _TokenizedDataset]:
    """Training and validation sets: class targets, or for a regression run the values
    standardised with the training split's mean and deviation (:mod:`.regression`)."""
    parts = (splits.train, splits.validation)
    if args.task != "regression":
        train, val = (_encode(tokenizer, part, splits.labels, args.multi_label, max_length) for part in parts)
    else:
        train, val = (_TokenizedDataset(dict(tokenizer([e.text for e in part], truncation=True, max_length=max_length)),
                                        standardised_targets(part, splits.train)) for part in parts)
    return train, val


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


def class_weights(examples: Sequence[Example], labels: Sequence[str]) -> torch.Tensor:
    """Balanced weights n / (k * count) per class (scikit-learn's ``class_weight="balanced"``):
    each class carries the same total weight in the loss, whatever its share of the notes."""
    counts = np.bincount(targets_for(examples, labels, False), minlength=len(labels)).astype(np.float64)
    weights = len(examples) / (len(labels) * np.maximum(counts, 1.0))
    return torch.as_tensor(weights, dtype=torch.float32)


def weighted_loss(weights: torch.Tensor) -> Callable[..., torch.Tensor]:
    """Cross-entropy with per-class weights, in the form Trainer's ``compute_loss_func`` calls."""

    def loss(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        return torch.nn.functional.cross_entropy(logits.float(), labels, weight=weights.to(logits.device))

    return loss


# The metric patience watches is the mean of the last two evaluations: one lucky or unlucky
# epoch on a small validation split neither resets the patience nor ends the run, and a
# plateau stops the run as soon as it is two evaluations long (an exponential average keeps
# creeping up on a plateau and would add epochs).
SMOOTHING_WINDOW = 2
MIN_IMPROVEMENT = 1e-3


class SmoothedStopping(TrainerCallback):
    """Stop when the moving average of the validation metric over the last
    ``SMOOTHING_WINDOW`` evaluations has not improved for ``patience`` evaluations (the best
    raw epoch is still the one kept)."""

    def __init__(self, metric: str, patience: int) -> None:
        self.metric, self.patience = metric, patience
        self.sign = -1.0 if metric == "loss" else 1.0
        self.recent: list[float] = []
        self.best: float | None = None
        self.waited = 0
        self.stopped = False

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        value = (metrics or {}).get(f"eval_{self.metric}")
        # The probe head's score before training (step 0) competes for the kept model, not for
        # patience: a fine-tune first dips below its start while the encoder adapts.
        if value is None or state.global_step == 0:
            return
        self.recent = [*self.recent, self.sign * float(value)][-SMOOTHING_WINDOW:]
        smoothed = sum(self.recent) / len(self.recent)
        if self.best is None or smoothed > self.best + MIN_IMPROVEMENT:
            self.best, self.waited = smoothed, 0
        else:
            self.waited += 1
            if self.waited >= self.patience:
                self.stopped = control.should_training_stop = True


class Deadline(TrainerCallback):
    """Stop training early enough that the last evaluation still ends by ``deadline``
    (a ``time.monotonic()`` value); the evaluation time is the longest one seen so far."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.eval_s = 0.0
        self.hit = False

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.eval_s = max(self.eval_s, float((metrics or {}).get("eval_runtime", 0.0)))

    def on_step_end(self, args, state, control, **kwargs):
        if time.monotonic() + self.eval_s >= self.deadline:
            self.hit = control.should_training_stop = True


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


def train_in_bf16(device: torch.device) -> bool:
    """bf16 autocast for the forward and backward passes where the hardware has bf16 units
    (the weights and optimiser stay fp32): 1.3x the samples/s of fp32 for a LoRA step on Medical
    Abstracts on a 2-core AVX512-BF16 CPU; where bf16 is emulated it would be slower."""
    return bf16_is_fast(device)


def training_arguments(args: TrainArgs, scratch: str, *, seed: int, device: torch.device,
                       **schedule: Any) -> TrainingArguments:
    """The Trainer's arguments every fit shares (batch, optimiser, precision, sampling); ``schedule``
    adds what differs between the real run and a search trial (length, rate schedule, evaluation)."""
    return TrainingArguments(
        output_dir=scratch,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=max(args.batch_size, 32),
        learning_rate=args.resolved_learning_rate,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_ratio,
        optim="adamw_torch",
        report_to="none",
        seed=seed,
        use_cpu=device.type == "cpu",
        bf16=train_in_bf16(device),
        # gloo is the CPU backend for torchrun; naming it outside torchrun breaks accelerate.
        ddp_backend="gloo" if device.type == "cpu" and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        remove_unused_columns=False,
        train_sampling_strategy="group_by_length",
        dataloader_num_workers=0,
        **schedule,
    )


def _training_arguments(args: TrainArgs, scratch: str, epochs: float, *, seed: int, device: torch.device,
                        per_epoch: bool, progress: bool) -> TrainingArguments:
    return training_arguments(
        args, scratch, seed=seed, device=device,
        num_train_epochs=epochs,
        max_steps=args.max_steps,
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
        disable_tqdm=not progress,
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
    epochs: float,
    deadline: float | None = None,
) -> Fit | None:
    """Fine-tune ``model`` on the splits' training notes, keeping the best epoch on validation.

    Args:
        scratch: the run's checkpoint folder, the same on every torchrun rank; created here and
            removed when the fit ends, whatever happens.
        epochs: the planned epochs (the learning rate decays to zero over them).
        deadline: a ``time.monotonic()`` value by which training and its last evaluation end.

    Returns:
        The fitted model and the run's record; ``None`` on torchrun ranks other than the main one.
    """
    model = _prepare_model(model, args)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    train_set, val_set = _datasets(tokenizer, splits, args, max_length)

    scratch_dir = _scratch_dir(scratch)
    try:
        per_epoch = args.max_steps < 0
        training_args = _training_arguments(args, scratch_dir, epochs, seed=seed, device=device,
                                            per_epoch=per_epoch, progress=progress)
        stopping = SmoothedStopping(args.select_by, args.early_stopping_patience)
        clock = Deadline(deadline) if deadline is not None else None
        callbacks: list[TrainerCallback] = []
        if per_epoch and args.early_stopping_patience > 0:
            callbacks.append(stopping)
        if clock is not None:
            callbacks.append(clock)
        if on_progress is not None:
            callbacks.append(_ProgressCallback(on_progress))
        trainer = Trainer(
            model=model,
            args=training_args,
            train_dataset=train_set,
            eval_dataset=val_set,
            data_collator=DataCollatorWithPadding(tokenizer),
            compute_metrics=(regression_metrics_fn(splits.train) if args.task == "regression"
                             else _compute_metrics_fn(args.multi_label)),
            compute_loss_func=loss_function(args, splits),
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
        stopped_by = _stop_reason(args, stopping, clock, trainer.state.epoch or 0.0, epochs)
    finally:
        if is_main_process():
            shutil.rmtree(scratch_dir, ignore_errors=True)

    if not trainer.is_world_process_zero():
        return None
    return Fit(
        # Under bf16 training accelerate wraps forward in autocast; scoring and saving want the plain model.
        model=trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False).eval(),
        trainable=int(trainable),
        epochs_budget=float(epochs),
        wall_s=wall_s,
        samples_per_s=float(output.metrics.get("train_samples_per_second", 0.0)),
        log_history=log_history,
        best_metric=best_metric,
        world_size=world,
        start_check=start_check,
        stopped_by=stopped_by,
    )


def loss_function(args: TrainArgs, splits: Splits) -> Callable[..., torch.Tensor] | None:
    """The class-weighted loss when ``class_weight="balanced"`` (single-label), a regression run's
    MSE or Huber, else the model's own."""
    if args.task == "regression":
        return regression_loss(args.loss)
    if args.class_weight != "balanced" or args.multi_label:
        return None
    return weighted_loss(class_weights(splits.train, splits.labels))


def _stop_reason(args: TrainArgs, stopping: SmoothedStopping, clock: Deadline | None, epoch: float,
                 planned: float) -> str:
    """One sentence for the card and the CLI: what ended the run."""
    metric = "validation loss" if args.select_by == "loss" else "validation macro-F1"
    if stopping.stopped:
        return (f"{metric} (smoothed) stopped improving for {args.early_stopping_patience} evaluations, "
                f"after {epoch:.1f} of {planned:g} planned epochs")
    if clock is not None and clock.hit:
        return f"time budget spent after {epoch:.1f} of {planned:g} planned epochs"
    if args.max_steps > 0:
        return f"max_steps={args.max_steps} reached"
    return f"ran all {planned:g} planned epochs"


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
