"""Bundled real datasets with verified loaders, tokenizers and dataset helpers.

Datasets (files in ``ropekit/data/files``, each checked against ``MANIFEST.json`` before parsing):

* :func:`load_sotu` - 233 State of the Union addresses (1790-2021, ~1.8M words).
* :func:`load_spam` - 6,046 SpamAssassin messages, bodies only, fixed train/validation/test split.
* :func:`load_mnist_5k` - 5,000 MNIST digits, 500 per class.

Helpers: :class:`ByteTokenizer` / :func:`train_bpe`, :func:`lm_splits`, :class:`LMWindows`,
:func:`lm_batches`, :func:`classification_dataset`, :func:`passkey_sample`. See ``docs/data.md``.
"""

from ropekit.data.classification import ClassificationData, classification_dataset
from ropekit.data.errors import DataError
from ropekit.data.lm import LMSplits, LMWindows, lm_batches, lm_eval_windows, lm_splits, sotu_split_of
from ropekit.data.manifest import DATA_DIR, load_manifest, verified_path
from ropekit.data.mnist import load_mnist_5k
from ropekit.data.passkey import PasskeySample, default_filler, passkey_sample
from ropekit.data.sotu import Speech, load_sotu
from ropekit.data.spam import LABELS, SPLITS, Mail, load_spam
from ropekit.data.tokenizer import BPETokenizer, ByteTokenizer, Tokenizer, train_bpe

__all__ = [
    "DATA_DIR",
    "LABELS",
    "SPLITS",
    "BPETokenizer",
    "ByteTokenizer",
    "ClassificationData",
    "DataError",
    "LMSplits",
    "LMWindows",
    "Mail",
    "PasskeySample",
    "Speech",
    "Tokenizer",
    "classification_dataset",
    "default_filler",
    "lm_batches",
    "lm_eval_windows",
    "lm_splits",
    "load_manifest",
    "load_mnist_5k",
    "load_sotu",
    "load_spam",
    "passkey_sample",
    "sotu_split_of",
    "train_bpe",
    "verified_path",
]
