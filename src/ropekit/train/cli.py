"""``ropekit train lm|classify|seq2seq``, ``ropekit eval`` and ``ropekit generate``.

Examples::

    ropekit train classify --pe rope --steps 300 --out runs/spam-rope
    ropekit train lm --pe yarn --rope-factor 4 --rope-original-max 128 --context-len 128 --out runs/lm-yarn
    ropekit train lm --tokenizer bpe --bpe-vocab-size 1024 --out runs/lm-bpe      # BPE trained on the train split
    torchrun --nproc_per_node 2 -m ropekit.cli train lm --out runs/lm-ddp        # DistributedDataParallel
    ropekit eval runs/lm-rope --split test --context-len 512 --rope-type yarn --rope-factor 4
    ropekit generate runs/lm-rope --prompt "Fellow citizens" --max-new-tokens 200

``register`` stays cheap: torch and the models are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["register"]


def _int_at_least(low: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def _float_in(low: float, high: float = float("inf"), *, open_low: bool = False, open_high: bool = False) -> Any:
    lo, hi = "(" if open_low else "[", ")" if open_high or high == float("inf") else "]"
    want = f"a finite number in {lo}{low:g}, {high:g}{hi}"

    def parse(text: str) -> float:
        import math

        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {want}, got {text!r}") from None
        bad_low = value <= low if open_low else value < low
        bad_high = value >= high if open_high else value > high
        if not math.isfinite(value) or bad_low or bad_high:
            raise argparse.ArgumentTypeError(f"expected {want}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


POSITIVE, NON_NEGATIVE = _int_at_least(1), _int_at_least(0)
DEFAULT_WARMUP = 30


def _add_pe_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("position encoding")
    g.add_argument(
        "--pe",
        default=None,
        help="none, sinusoidal, learned, alibi, rope, xpos, prope, learned_freq, "
        "receptive, or a RoPE alias: pi, ntk, dynamic, yarn, llama3, longrope (train default: rope)",
    )
    g.add_argument("--rope-type", default=None, help="rope_parameters.rope_type (e.g. linear, yarn, dynamic)")
    g.add_argument(
        "--rope-theta", type=_float_in(0, open_low=True), default=None, help="base; ABF = a larger theta (e.g. 500000)"
    )
    g.add_argument("--rope-factor", type=_float_in(1), default=None, help="rope_parameters.factor")
    g.add_argument(
        "--rope-original-max",
        type=POSITIVE,
        default=None,
        help="rope_parameters.original_max_position_embeddings (YaRN, LongRoPE, Llama 3)",
    )
    g.add_argument("--rope-params", default=None, help="full rope_parameters as JSON (merged under the flags above)")
    g.add_argument(
        "--pe-options",
        default=None,
        help="extra options of the kind as JSON, e.g. '{\"p\": 0.5}' for prope, '{\"alpha\": 0.2}'",
    )
    g.add_argument(
        "--random-max",
        type=POSITIVE,
        default=None,
        help="train on sorted random positions from [0, N) (Ruoss et al. 2023), with any kind",
    )
    g.add_argument("--interleaved", action="store_true", default=None, help="GPT-J pairing for rotary kinds")


def _json_arg(text: str | None, flag: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{flag} must be a JSON object, got {text!r} ({e})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{flag} must be a JSON object like '{{\"key\": 1}}', got {text!r}")
    return value


def _pe_spec(args: argparse.Namespace, base: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The position spec from the flags, layered over ``base`` (the trained model's spec, for eval)."""
    rope = _json_arg(args.rope_params, "--rope-params")
    for flag, key in (
        ("rope_type", "rope_type"),
        ("rope_theta", "rope_theta"),
        ("rope_factor", "factor"),
        ("rope_original_max", "original_max_position_embeddings"),
    ):
        if getattr(args, flag) is not None:
            rope[key] = getattr(args, flag)
    extra = _json_arg(args.pe_options, "--pe-options")
    if args.random_max is not None:
        extra["random_max"] = args.random_max
    if args.interleaved:
        extra["interleaved"] = True
    if args.pe is None and not rope and not extra:
        return base
    from ropekit.models.positions import normalise_position_spec
    from ropekit.scaling import canonical_rope_type

    spec = normalise_position_spec(base or "rope") if args.pe is None else normalise_position_spec(args.pe)
    if rope:
        if spec["kind"] == "rope":  # "rope" or an alias naming a scaling type ("yarn", "pi", ...)
            params = dict(spec.get("rope_parameters") or {})
            if args.pe is not None and "rope_type" in params and "rope_type" in rope:
                named, given = canonical_rope_type(params["rope_type"]), canonical_rope_type(str(rope["rope_type"]))
                if named != given and named != "default":
                    raise ValueError(
                        f"--pe {args.pe} means rope_type {named!r} but --rope-type/--rope-params ask for "
                        f"{rope['rope_type']!r}; give one of them"
                    )
            spec["rope_parameters"] = {**params, **rope}
        elif set(rope) == {"rope_theta"}:
            spec["rope_theta"] = rope["rope_theta"]  # xpos, prope, learned_freq, receptive take a base
        else:
            raise ValueError(f"--rope-* flags other than --rope-theta need a RoPE kind, not --pe {spec['kind']}")
    spec.update(extra)
    return spec


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model (lm, classify, seq2seq) on the bundled data",
        description="Train a decoder LM on State of the Union speeches, a spam classifier on "
        "SpamAssassin, or an encoder-decoder that reverses token spans of speech text.",
    )
    tasks = p.add_subparsers(dest="task", required=True, metavar="TASK")
    for name, help_ in (
        ("lm", "language model on State of the Union speeches"),
        ("classify", "ham/spam classifier on SpamAssassin message bodies"),
        ("seq2seq", "encoder-decoder reversing token spans of speech text"),
    ):
        t = tasks.add_parser(name, help=help_)
        t.add_argument("--out", required=True, help="run folder: checkpoints, config.json, model.safetensors")
        t.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
        t.add_argument("--overwrite", action="store_true", help="start afresh in an --out that already holds a run")
        g = t.add_argument_group("model")
        g.add_argument("--d-model", type=POSITIVE, default=64)
        g.add_argument("--n-heads", type=POSITIVE, default=4)
        g.add_argument("--n-kv-heads", type=POSITIVE, default=None)
        g.add_argument("--n-layers", type=POSITIVE, default=2)
        g.add_argument("--d-ff", type=POSITIVE, default=None)
        g.add_argument("--dropout", type=_float_in(0, 1, open_high=True), default=0.0)
        g.add_argument(
            "--max-len",
            type=POSITIVE,
            default=None,
            help="model max_len (learned table size; default: the task's length)",
        )
        _add_pe_options(t)
        k = t.add_argument_group("tokenizer")
        k.add_argument(
            "--tokenizer",
            default="byte",
            choices=("byte", "bpe"),
            help="byte (default, 261 ids) or a byte-level BPE trained on the training split only, "
            "saved as OUT/tokenizer.json",
        )
        k.add_argument(
            "--bpe-vocab-size",
            type=_int_at_least(259),
            default=None,
            help="BPE ids incl. 256 bytes + 3 specials (default 1024)",
        )
        o = t.add_argument_group("optimisation")
        o.add_argument("--steps", type=POSITIVE, default=300)
        o.add_argument("--batch-size", type=POSITIVE, default=32, help="global batch (split over torchrun processes)")
        o.add_argument("--lr", type=_float_in(0, open_low=True), default=3e-3)
        o.add_argument("--weight-decay", type=_float_in(0), default=0.1)
        o.add_argument(
            "--warmup",
            type=NON_NEGATIVE,
            default=None,
            help=f"warm-up steps (default {DEFAULT_WARMUP}, at most --steps; a resumed run keeps its own)",
        )
        o.add_argument("--min-lr-ratio", type=_float_in(0, 1), default=0.1, help="final lr / lr, in [0, 1]")
        o.add_argument("--grad-clip", type=_float_in(0), default=1.0, help="max gradient norm; 0 = no clipping")
        o.add_argument("--eval-every", type=NON_NEGATIVE, default=100, help="0: no evaluation")
        o.add_argument(
            "--ckpt-every", type=NON_NEGATIVE, default=0, help="0: checkpoint at each evaluation and the end"
        )
        o.add_argument("--seed", type=NON_NEGATIVE, default=0)
        o.add_argument(
            "--threads", type=POSITIVE, default=1, help="torch threads per process (1 measured fastest here)"
        )
        o.add_argument("--stop-after", type=POSITIVE, default=None, help="stop after this step (resume later)")
        o.add_argument(
            "--device", default="cpu", help="where to train: cpu (default) or cuda (under torchrun: cuda:LOCAL_RANK)"
        )
        o.add_argument("--no-progress", action="store_true", help="no progress bar")
        if name == "lm":
            t.add_argument("--context-len", type=POSITIVE, default=128)
            t.add_argument("--eval-windows", type=POSITIVE, default=64, help="validation windows per evaluation")
        elif name == "classify":
            t.add_argument(
                "--seq-len", type=_int_at_least(2), default=256, help="bos + first N-1 body tokens per message"
            )
            t.add_argument("--eval-split", default="validation", choices=("validation", "test"))
        else:
            t.add_argument("--max-span", type=_int_at_least(8), default=32, help="longest reversed span (tokens)")
        t.set_defaults(func=_run_train)


def _tokenizer_for(args: argparse.Namespace) -> Any:
    """The tokenizer spec of the flags; on --resume the run's own tokenizer (loaded from its file, not retrained)."""
    from ropekit.models import CheckpointError
    from ropekit.train.checkpoint import latest_checkpoint
    from ropekit.train.tokenization import load_run_tokenizer, tokenizer_spec

    if args.tokenizer == "byte" and args.bpe_vocab_size is not None:
        raise ValueError("--bpe-vocab-size needs --tokenizer bpe")
    spec = tokenizer_spec(
        {"kind": "bpe", "vocab_size": args.bpe_vocab_size} if args.bpe_vocab_size is not None else args.tokenizer
    )
    if not args.resume or latest_checkpoint(args.out) is None:
        return spec
    saved = load_run_tokenizer(args.out)
    if saved.spec != spec:
        raise CheckpointError(
            f"cannot resume {args.out}: it was trained with tokenizer {saved.spec}, the flags ask for {spec}; "
            f"resume with the original --tokenizer / --bpe-vocab-size, or use a new --out"
        )
    return saved


def _task_for(args: argparse.Namespace) -> Any:
    from ropekit.train.tasks import ClassifyTask, LMTask, ReverseTask

    tok = _tokenizer_for(args)
    if args.task == "lm":
        return LMTask.sotu(context_len=args.context_len, eval_windows=args.eval_windows, tokenizer=tok)
    if args.task == "classify":
        return ClassifyTask.spam(max_len=args.seq_len, eval_split=args.eval_split, tokenizer=tok)
    return ReverseTask.sotu(max_span=args.max_span, tokenizer=tok)


def _warmup(args: argparse.Namespace) -> int:
    """The warm-up as the user gave it (default :data:`DEFAULT_WARMUP`), at most ``--steps``.

    On ``--resume`` the run keeps the warm-up it was trained with when the flag is the same setting: a default of
    30 stored as 4 in a 4-step run is the same setting in an 8-step resume, not a change of schedule."""
    from ropekit.train.checkpoint import latest_checkpoint

    given = DEFAULT_WARMUP if args.warmup is None else args.warmup
    if args.resume and (where := latest_checkpoint(args.out)) is not None:
        from ropekit.models.io import read_json

        saved = read_json(where / "state.json").get("train", {})
        saved_warmup, saved_steps = saved.get("warmup"), saved.get("steps")
        if isinstance(saved_warmup, int) and isinstance(saved_steps, int) and min(given, saved_steps) == saved_warmup:
            return saved_warmup
    if args.warmup is not None and args.warmup > args.steps:
        raise ValueError(f"--warmup {args.warmup} is longer than --steps {args.steps}; give at most {args.steps}")
    return min(given, args.steps)


def _claim_out(args: argparse.Namespace) -> None:
    """``--out`` must be new, empty or this command's own run folder (see docs/commands.md)."""
    import os
    from pathlib import Path

    from ropekit.models import CheckpointError
    from ropekit.train.checkpoint import claim_run_folder

    out = Path(args.out)
    if args.resume and not out.is_dir():
        raise CheckpointError(f"nothing to resume: --out {out} does not exist; run without --resume first")
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 owns the folder (it writes the checkpoints)
        claim_run_folder(out, resume=args.resume, overwrite=args.overwrite)


def _run_train(args: argparse.Namespace) -> int:
    from ropekit.models import ModelConfig
    from ropekit.train.loop import TrainConfig, train

    if args.tokenizer == "byte" and args.bpe_vocab_size is not None:
        raise ValueError("--bpe-vocab-size needs --tokenizer bpe")
    if args.n_kv_heads is not None and args.n_heads % args.n_kv_heads:
        raise ValueError(f"--n-kv-heads {args.n_kv_heads} must divide --n-heads {args.n_heads}")
    if args.d_model % args.n_heads:
        raise ValueError(f"--d-model {args.d_model} must be divisible by --n-heads {args.n_heads}")
    length = {
        "lm": getattr(args, "context_len", 0),
        "classify": getattr(args, "seq_len", 0),
        "seq2seq": getattr(args, "max_span", 0) + 1,
    }[args.task]
    model_cfg = ModelConfig(
        task=args.task,
        d_model=args.d_model,
        n_heads=args.n_heads,
        n_kv_heads=args.n_kv_heads,
        n_layers=args.n_layers,
        d_ff=args.d_ff,
        dropout=args.dropout,
        max_len=args.max_len or length,
        pe=_pe_spec(args) or {"kind": "rope"},
    )
    from ropekit.models.positions import build_position_encoding

    build_position_encoding(model_cfg.pe, model_cfg.dims())  # its options are checked before anything is written
    from ropekit.train.device import resolve_device

    resolve_device(args.device)  # checked before anything is written
    cfg = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup=_warmup(args),
        min_lr_ratio=args.min_lr_ratio,
        grad_clip=args.grad_clip,
        eval_every=args.eval_every,
        ckpt_every=args.ckpt_every,
        seed=args.seed,
        threads=args.threads,
    )
    _claim_out(args)  # every flag checked: only now is anything written
    task = _task_for(args)
    res = train(
        model_cfg,
        task,
        cfg,
        out_dir=args.out,
        resume=args.resume,
        progress=not args.no_progress,
        stop_after=args.stop_after,
        overwrite=False,  # _claim_out already emptied an --overwrite folder (before the task was built)
        device=args.device,
    )
    import os

    if os.environ.get("RANK", "0") == "0":
        print(json.dumps({"step": res.step, "seconds": round(res.seconds, 2), "final_eval": res.final_eval}))
    return 0


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a trained run (optionally at another length or RoPE scaling)")
    p.add_argument("run", help="run folder written by `ropekit train` (or a checkpoint step folder)")
    p.add_argument("--split", default="validation", choices=("validation", "test"))
    p.add_argument("--context-len", type=POSITIVE, default=None, help="lm: evaluation window (default: training's)")
    p.add_argument("--eval-windows", type=POSITIVE, default=None, help="lm: number of windows (default: training's)")
    p.add_argument("--threads", type=POSITIVE, default=1)
    _add_pe_options(p)
    p.set_defaults(func=_run_eval)


def _load_run(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The run's model (with position-encoding flags applied over its own spec) and its saved metadata."""
    import dataclasses
    from pathlib import Path

    from ropekit.models import load_model
    from ropekit.models.io import load_state_checked, model_config, read_json
    from ropekit.models.transformer import build_model

    model = load_model(args.run)
    run = Path(args.run)
    meta_file = run / "config.json" if (run / "config.json").exists() else run / "state.json"
    if not meta_file.exists() and (run / "latest.json").exists():
        from ropekit.train.checkpoint import latest_checkpoint

        meta_file = (latest_checkpoint(run) or run) / "state.json"
    meta = read_json(meta_file) if meta_file.exists() else {}
    config = model_config(model)
    spec = _pe_spec(args, dict(config.pe))
    if spec is not None and spec != config.pe:  # e.g. a trained RoPE model evaluated with YaRN scaling: same weights
        swapped = build_model(dataclasses.replace(config, pe=spec))
        load_state_checked(swapped, model.state_dict(), str(args.run))
        model = swapped.eval()
    return model, meta


def _run_eval(args: argparse.Namespace) -> int:
    import torch

    from ropekit.data import classification_dataset, lm_splits
    from ropekit.models.io import model_config
    from ropekit.train.tasks import ClassifyTask, LMTask, ReverseTask

    torch.set_num_threads(args.threads)
    model, meta = _load_run(args)
    spec = meta.get("task", {})
    name = model_config(model).task
    task: LMTask | ClassifyTask | ReverseTask
    tt, tok = _run_tokenizer(args.run, model)
    if name == "lm":
        s = lm_splits(tok)
        ctx = args.context_len or spec.get("context_len", 128)
        windows = args.eval_windows or spec.get("eval_windows", 64)
        task = LMTask(
            s.train,
            getattr(s, args.split),
            context_len=ctx,
            vocab_size=tok.vocab_size,
            eval_windows=windows,
            tokenizer=tt,
        )
    elif name == "classify":
        n = spec.get("max_len", 256)
        task = ClassifyTask(
            None,
            classification_dataset(args.split, tok, n),
            vocab_size=tok.vocab_size,
            n_classes=model_config(model).n_classes,
            eval_split=args.split,
            max_len=n,
            tokenizer=tt,
        )
    else:
        s = lm_splits(tok)
        task = ReverseTask(
            s.train,
            getattr(s, args.split),
            vocab_size=tok.vocab_size,
            pad_id=tok.pad_id,
            bos_id=tok.bos_id,
            eos_id=tok.eos_id,
            max_span=spec.get("max_span", 32),
            eval_examples=spec.get("eval_examples", 256),
            tokenizer=tt,
        )
    sums = task.evaluate(model, 0, 1)
    result: dict[str, Any] = {k: v[0] / max(v[1], 1e-12) for k, v in sums.items()}
    if isinstance(task, LMTask):
        result["unigram_entropy_baseline"] = task.baseline()
        result["context_len"] = task.context_len
        if not tt.is_byte:  # per-byte figures, comparable with byte-level runs
            bpt = task.bytes_per_token()
            result["bytes_per_token"] = bpt
            result["unigram_entropy_baseline_per_byte"] = result["unigram_entropy_baseline"] / bpt
    result.update({"split": args.split, "pe": model.config.pe, "tokenizer": tt.spec})
    print(json.dumps(result))
    return 0


def _run_tokenizer(run: str, model: Any) -> tuple[Any, Any]:
    """The run's :class:`TaskTokenizer` and tokenizer, checked against the model's vocabulary."""
    from ropekit.train.tokenization import load_run_tokenizer

    tt = load_run_tokenizer(run)
    if tt.tokenizer.vocab_size != model.config.vocab_size:
        raise ValueError(
            f"{run}: the model has vocab_size {model.config.vocab_size} but its tokenizer ({tt.spec}) has "
            f"{tt.tokenizer.vocab_size} ids; the run's config.json / tokenizer.json do not belong to these weights"
        )
    return tt, tt.tokenizer


def _add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="sample from a trained LM, or run a trained seq2seq model on text")
    p.add_argument("run", help="run folder written by `ropekit train lm|seq2seq`")
    p.add_argument("--prompt", default="", help="text to continue (lm) or to transform (seq2seq)")
    p.add_argument("--max-new-tokens", type=NON_NEGATIVE, default=200)
    p.add_argument("--temperature", type=_float_in(0), default=0.8, help="0 = greedy")
    p.add_argument("--top-k", type=POSITIVE, default=None)
    p.add_argument("--seed", type=NON_NEGATIVE, default=0)
    _add_pe_options(p)
    p.set_defaults(func=_run_generate)


def _run_generate(args: argparse.Namespace) -> int:
    import torch

    model, _ = _load_run(args)
    _, tok = _run_tokenizer(args.run, model)
    prompt = tok.encode(args.prompt) or [tok.bos_id]  # an empty prompt starts from bos
    ids = torch.tensor([prompt], dtype=torch.int64)  # [1, T]
    if model.config.task == "lm":
        out = model.generate(
            ids,
            args.max_new_tokens,
            temperature=args.temperature,
            top_k=args.top_k,
            eos_id=tok.eos_id,
            generator=torch.Generator().manual_seed(args.seed),
        )
        print(args.prompt + tok.decode(out[0, ids.shape[1] :].tolist()))
    elif model.config.task == "seq2seq":
        out = model.generate(ids, args.max_new_tokens, bos_id=tok.bos_id, eos_id=tok.eos_id)
        print(tok.decode(out[0, 1:].tolist()))
    else:
        raise ValueError(
            f"{args.run} is a {model.config.task!r} model; generate needs an lm or seq2seq run "
            f"(use `ropekit eval` for classifiers)"
        )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train``, ``eval`` and ``generate`` to the ``ropekit`` command."""
    _add_train(subparsers)
    _add_eval(subparsers)
    _add_generate(subparsers)
