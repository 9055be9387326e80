"""Fine-tune with transformers' Trainer, then calibrate, evaluate and write a version folder."""

from __future__ import annotations

import os
import resource
import shutil
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from safetensors.torch import save_file
from sklearn.metrics import f1_score
from transformers import (
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    EvalPrediction,
    PreTrainedModel,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)

import healthmon
from healthmon.config import Settings, resolve_base_model
from healthmon.errors import ConfigError, ModelError
from healthmon.model.card import MULTI_LABEL, SINGLE_LABEL, ModelCard
from healthmon.model.classifier import Classifier, calibrated_probabilities
from healthmon.model.device import bf16_is_fast, pick_device
from healthmon.model.lineage import initialise_from_version, save_training_data
from healthmon.model.loading import (
    ADAPTER_DIR,
    FULL_DIR,
    HEAD_FILE,
    build_model,
    head_module_names,
    head_state_dict,
    load_tokenizer,
    new_module_names,
    quiet_transformers,
)
from healthmon.model.pooling import base_model_pooling
from healthmon.model.versions import atomic_version_dir, check_target_free, new_version_name
from healthmon.training.args import TrainArgs, auto_epochs
from healthmon.training.calibration import fit_temperature, tune_thresholds
from healthmon.training.data import DataReport, Example, Splits, build_splits
from healthmon.training.metrics import classification_metrics
from healthmon.training.probe import fit_probe_head
from healthmon.types import Note


@dataclass(frozen=True)
class TrainResult:
    """Where the new version lives and what it scored (``None`` on non-zero ranks)."""

    version_dir: Path | None
    card: ModelCard | None
    metrics: dict[str, Any]


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


def targets_for(examples: Sequence[Example], labels: Sequence[str], multi_label: bool) -> np.ndarray:
    """Class indices (single-label) or a float 0/1 matrix (multi-label) in head order."""
    index = {label: i for i, label in enumerate(labels)}
    if multi_label:
        matrix = np.zeros((len(examples), len(labels)), dtype=np.float32)
        for row, example in enumerate(examples):
            for label in example.labels:
                matrix[row, index[label]] = 1.0
        return matrix
    return np.array([index[example.labels[0]] for example in examples], dtype=np.int64)


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
            modules_to_save=[n for n in head_module_names(model) if n != "classifier" and n in new_module_names(model)] or None,
        )
        try:
            with quiet_transformers():
                return get_peft_model(model, config)
        except ValueError as exc:
            linear = sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
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


def _compute_metrics_fn(multi_label: bool):
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


def _peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux: the honest peak of this process, model and activations included.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


class _ProgressCallback(TrainerCallback):
    """Reports training progress (steps done / planned) to a plain function."""

    def __init__(self, report: Callable[[float, str], None]) -> None:
        self.report = report

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003 (Trainer's signature)
        total = max(state.max_steps, 1)
        self.report(min(state.global_step / total, 1.0), f"training step {state.global_step} of {total}")


def check_one_gpu_per_process(device: torch.device) -> None:
    """Under torchrun on CUDA each process needs a GPU of its own: NCCL refuses two ranks on
    one device ("Duplicate GPU detected"), after the model and data are already loaded."""
    processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if device.type == "cuda" and processes > torch.cuda.device_count():
        raise ConfigError(
            "one GPU per training process under torchrun",
            f"{processes} processes on this machine and {torch.cuda.device_count()} GPU(s) visible",
            f"use --nproc_per_node={torch.cuda.device_count()}, or train on the CPU with gloo: hide the GPUs "
            "(CUDA_VISIBLE_DEVICES= torchrun ...) with HEALTHMON_DEVICE auto or cpu",
        )


def train(
    notes: Sequence[Note],
    args: TrainArgs | None = None,
    *,
    out_dir: str | Path | None = None,
    settings: Settings | None = None,
    progress: bool = True,
    synthetic_data: bool = False,
    on_progress: Callable[[float, str], None] | None = None,
) -> TrainResult:
    """Fine-tune a classifier on labelled notes and write a calibrated version folder.

    Args:
        notes: labelled notes (``Note.labels``); unlabelled and duplicate ones are counted
            in the card's data report, not used.
        args: training knobs (defaults: see :class:`TrainArgs`).
        out_dir: version folder to create (must not exist); default a new name under the
            models folder.
        settings: base model, device, max length and seed defaults.
        progress: show tqdm progress bars.
        synthetic_data: mark the version as trained on synthetic notes (shown in the UI).
        on_progress: called with (fraction done, message) after each optimiser step, e.g. to
            update a background job's progress bar; it may raise to stop training.

    Returns:
        The version folder, its card and the metrics (validation, test before/after
        calibration, before fine-tuning, training cost).
    """
    args = args or TrainArgs()
    settings = settings or Settings()
    seed = args.seed if args.seed is not None else settings.seed
    max_length = args.max_length or settings.max_length
    multi_label = args.multi_label
    problem_type = MULTI_LABEL if multi_label else SINGLE_LABEL

    splits, report = train_splits_only(notes, args, settings)
    target = Path(out_dir) if out_dir else settings.resolved_models_dir / new_version_name(args.mode, splits.fingerprint)
    check_target_free(target)

    device = pick_device(settings.device)
    check_one_gpu_per_process(device)  # before the model loads
    set_seed(seed)
    pooling = _resolved_pooling(args, settings.base_model)
    args = replace(args, pooling=pooling)  # the card's train_args record what was used, not "unset"
    model = build_model(settings.base_model, splits.labels, problem_type, dropout=args.dropout, pooling=pooling)
    parent = ""
    if args.init_from:
        parent = str(Path(args.init_from).resolve())
        initialise_from_version(model, Path(parent))
    tokenizer = load_tokenizer(settings.base_model)
    card_stub = ModelCard(
        labels=splits.labels,
        problem_type=problem_type,
        base_model=settings.base_model,
        weights_format=args.mode,
        max_length=max_length,
        window_stride=settings.window_stride,
        parent_version=parent,
        pooling=pooling,
    )
    test_targets = targets_for(splits.test, splits.labels, multi_label)
    test_texts = [e.text for e in splits.test]

    before: dict[str, Any] = {}
    if _is_main_process():
        # The same architecture with its fresh head: the "before fine-tuning" reference.
        untrained = Classifier(model, tokenizer, card_stub, device=settings.device, precision="fp32")
        before_probs = calibrated_probabilities(untrained.logits(test_texts), 1.0, multi_label)
        before = classification_metrics(before_probs, test_targets, splits.labels, multi_label=multi_label)

    head_init: dict[str, Any] = {"method": "random"}
    if args.head_init == "probe":
        if on_progress is not None:
            on_progress(0.0, "fitting the head on the frozen encoder's features")
        # Under torchrun each rank fits the same probe (same notes, deterministic regression) on its own GPU.
        local = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if device.type == "cuda" else device
        head_init = fit_probe_head(model, tokenizer, splits.train, splits.validation, splits.labels,
                                   multi_label=multi_label, max_length=max_length, device=local)
        if _is_main_process():
            # The probe alone, on the same test notes: what the fine-tune starts from and must beat.
            probed = Classifier(model, tokenizer, card_stub, device=settings.device, precision="fp32")
            head_init["test"] = classification_metrics(
                calibrated_probabilities(probed.logits(test_texts), 1.0, multi_label), test_targets,
                splits.labels, multi_label=multi_label)

    model = _prepare_model(model, args)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    train_set = _encode(tokenizer, splits.train, splits.labels, multi_label, max_length)
    val_set = _encode(tokenizer, splits.validation, splits.labels, multi_label, max_length)

    epochs = args.epochs if args.epochs is not None else auto_epochs(len(splits.train))
    scratch = _scratch_dir(settings, target)
    try:
        per_epoch = args.max_steps < 0
        training_args = TrainingArguments(
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
            compute_metrics=_compute_metrics_fn(multi_label),
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
        best_checkpoint_metric = trainer.state.best_metric
        if start_metric is not None:
            fine_tune_value = best_checkpoint_metric if best_checkpoint_metric is not None else start_metric
            start_wins = start_metric < fine_tune_value if args.select_by == "loss" else start_metric > fine_tune_value
            head_init.update({f"val_{args.select_by}": start_metric, "kept_instead_of_fine_tune": start_wins})
            if start_wins:
                with torch.no_grad():
                    for name, parameter in trainer.model.named_parameters():
                        if name in start_state:
                            parameter.copy_(start_state[name])
                best_checkpoint_metric = start_metric
        world = training_args.world_size
    finally:
        if _is_main_process():
            shutil.rmtree(scratch, ignore_errors=True)

    if not trainer.is_world_process_zero():
        return TrainResult(None, None, {})

    trained = trainer.model.eval()
    classifier = Classifier(trained, tokenizer, card_stub, device=settings.device, precision="fp32")
    val_targets = targets_for(splits.validation, splits.labels, multi_label)
    val_logits = classifier.logits([e.text for e in splits.validation])
    temperature = fit_temperature(val_logits, val_targets, multi_label) if args.calibrate else 1.0
    thresholds: dict[str, float] = {}
    if multi_label:
        thresholds = tune_thresholds(
            calibrated_probabilities(val_logits, temperature, True), val_targets, splits.labels
        )
    test_logits = classifier.logits(test_texts, progress=progress)
    raw_probs = calibrated_probabilities(test_logits, 1.0, multi_label)
    cal_probs = calibrated_probabilities(test_logits, temperature, multi_label)
    test_raw = classification_metrics(raw_probs, test_targets, splits.labels, multi_label=multi_label)
    test_cal = classification_metrics(
        cal_probs, test_targets, splits.labels, multi_label=multi_label, thresholds=thresholds or None
    )
    validation = classification_metrics(
        calibrated_probabilities(val_logits, temperature, multi_label),
        val_targets,
        splits.labels,
        multi_label=multi_label,
        thresholds=thresholds or None,
    )
    precision_check = {}
    if bf16_is_fast(classifier.device):
        # Recorded so precision="auto" can use bf16 only for versions where it is harmless.
        bf16 = Classifier(trained, tokenizer, card_stub, device=settings.device, precision="bf16")
        bf16_probs = calibrated_probabilities(bf16.logits(test_texts), temperature, multi_label)
        precision_check["bf16"] = {
            "max_drift": float(np.abs(bf16_probs - cal_probs).max()),
            "agreement": float((bf16_probs.argmax(1) == cal_probs.argmax(1)).mean()),
            "notes": len(test_texts),
        }
    epochs_run = max((row.get("epoch", 0.0) for row in log_history), default=0.0)
    metrics: dict[str, Any] = {
        # "raw" = the model as trained: temperature 1 and, for multi-label, 0.5 thresholds.
        "test": {**test_cal, "ece_uncalibrated": test_raw["ece"], "macro_f1_raw": test_raw["macro_f1"]},
        "validation": validation,
        "before_finetune": before,
        "head_init": head_init,
        "temperature": temperature,
        "thresholds": thresholds,
        "precision_check": precision_check,
        "train": {
            "mode": args.mode,
            "wall_s": round(wall_s, 2),
            "samples_per_s": round(float(output.metrics.get("train_samples_per_second", 0.0)), 2),
            "train_notes": len(splits.train),
            "epochs_budget": float(epochs),
            "epochs_run": float(epochs_run),
            f"best_val_{args.select_by}": best_checkpoint_metric,
            "trainable_params": int(trainable),
            "peak_rss_mb": round(_peak_rss_mb(), 1),
            "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if torch.cuda.is_available() else None,
            "world_size": world,
            "device": device.type,
        },
    }
    card = replace(
        card_stub,
        temperature=temperature,
        thresholds=thresholds,
        data_fingerprint=splits.fingerprint,
        train_args=args.to_dict(),
        metrics=metrics,
        data_report=asdict(report),
        training_log=log_history,
        created_at=datetime.now(timezone.utc).isoformat(),
        synthetic_data=synthetic_data,
        healthmon_version=healthmon.__version__,
    )
    with atomic_version_dir(target) as tmp:
        tokenizer.save_pretrained(str(tmp))
        _save_weights(trained, args.mode, tmp)
        save_training_data(tmp, splits, parent)
        card.save(tmp)
    return TrainResult(target, card, metrics)


def _encode(
    tokenizer: Any, examples: Sequence[Example], labels: Sequence[str], multi_label: bool, max_length: int
) -> _TokenizedDataset:
    # Training sees each note's first window; prediction scores every window (see
    # healthmon.model.classifier), so a label is never pinned on a window that lacks it.
    encodings = tokenizer([e.text for e in examples], truncation=True, max_length=max_length)
    targets = targets_for(examples, labels, multi_label)
    return _TokenizedDataset(dict(encodings), [t.tolist() if multi_label else int(t) for t in targets])


def _save_weights(model: torch.nn.Module, mode: str, folder: Path) -> None:
    if mode == "lora":
        model.save_pretrained(str(folder / ADAPTER_DIR))
    elif mode == "head":
        save_file(head_state_dict(model), str(folder / HEAD_FILE))
    else:
        model.save_pretrained(str(folder / FULL_DIR))


def _scratch_dir(settings: Settings, target: Path) -> str:
    """Checkpoint folder for one run, named after the version so every torchrun rank
    finds the same best checkpoint; beside the models so 90 MB checkpoints spare /tmp."""
    path = settings.resolved_models_dir / ".runs" / target.name
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError("a writable models folder", f"{path}: {exc.strerror}", "set HEALTHMON_MODELS_DIR to a writable folder") from exc
    return str(path)


def _parent_labels(args: TrainArgs) -> tuple[str, ...]:
    return ModelCard.load(args.init_from).labels if args.init_from else ()


def _resolved_pooling(args: TrainArgs, base_model: str) -> str:
    """The head's pooling: as asked, else the parent's when continuing, else the base model's
    own (:func:`~healthmon.model.pooling.base_model_pooling`: mean for the bundled base)."""
    if not args.init_from:
        return args.pooling or base_model_pooling(resolve_base_model(base_model))
    inherited = ModelCard.load(args.init_from).pooling
    if args.pooling and args.pooling != inherited:
        raise ConfigError(
            f"the pooling of the version being continued ({inherited})",
            f"pooling={args.pooling!r}",
            "leave --pooling unset when continuing a version; a new pooling needs a fresh model",
        )
    return inherited


def train_splits_only(notes: Sequence[Note], args: TrainArgs, settings: Settings) -> tuple[Splits, DataReport]:
    """The splits a :func:`train` call with these arguments would use (for benchmarks and tests)."""
    seed = args.seed if args.seed is not None else settings.seed
    inherited = _parent_labels(args)
    return build_splits(
        notes,
        multi_label=args.multi_label,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        seed=seed,
        label_order=inherited + tuple(label for label in args.label_order if label not in inherited),
        keep_label_order=bool(args.init_from),
    )


__all__ = ["TrainResult", "train", "train_splits_only", "targets_for"]
