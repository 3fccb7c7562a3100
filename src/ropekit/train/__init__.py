"""Training for :mod:`ropekit.models`: one loop (:func:`train`), tasks on the bundled data, safe checkpoints.

API::

    from ropekit.models import ModelConfig
    from ropekit.train import ClassifyTask, TrainConfig, train
    result = train(ModelConfig(d_model=64, pe="rope"), ClassifyTask.spam(max_len=256),
                   TrainConfig(steps=300, batch_size=32, eval_every=100), out_dir="runs/spam-rope")
    result.final_eval["accuracy"]
    LMTask.sotu(context_len=128, tokenizer="bpe")   # BPE (1024 ids) trained on the train split only

Run tokenizers (byte default; a BPE is saved as ``out_dir/tokenizer.json``): :mod:`ropekit.train.tokenization`.

Step loop without checkpoints (the report's experiments): :func:`run_steps` over :func:`train_step`, the same
step :func:`train` takes.

CLI: ``ropekit train lm|classify|seq2seq``, ``ropekit eval``, ``ropekit generate`` (:mod:`ropekit.train.cli`).
See ``docs/training.md``.
"""

from ropekit.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from ropekit.train.loop import TrainConfig, TrainResult, lr_at, make_optimizer, run_steps, train, train_step
from ropekit.train.tasks import ClassifyTask, LMTask, ReverseTask, Task, shard, task_from_spec, unigram_entropy
from ropekit.train.tokenization import TaskTokenizer, load_run_tokenizer, tokenizer_spec

__all__ = [
    "ClassifyTask",
    "LMTask",
    "ReverseTask",
    "Task",
    "TaskTokenizer",
    "TrainConfig",
    "TrainResult",
    "latest_checkpoint",
    "load_checkpoint",
    "load_run_tokenizer",
    "lr_at",
    "make_optimizer",
    "run_steps",
    "save_checkpoint",
    "shard",
    "task_from_spec",
    "tokenizer_spec",
    "train",
    "train_step",
    "unigram_entropy",
]
