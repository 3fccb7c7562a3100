"""Body extraction rules of scripts/build_datasets.py, on small synthetic messages."""

from __future__ import annotations

import base64

HEAD = (
    b"From spammer@example.com  Thu Aug 22 12:36:23 2002\n"
    b"Return-Path: <spammer@example.com>\n"
    b"Received: from mail.example.com by mx.example.org\n"
    b"    with ESMTP id 123; Thu, 22 Aug 2002 07:36:16 -0400\n"
    b"X-Spam-Status: Yes, hits=12.3 required=5.0\n"
    b"Subject: Win big\n"
)


def test_plain_body_without_headers(build_script) -> None:
    body = build_script.extract_body(HEAD + b"\nHello there.\nSecond line.\n")
    assert body.text == "Hello there.\nSecond line."
    assert body.source == "text/plain" and body.repairs == ()


def test_quoted_printable_and_charset(build_script) -> None:
    raw = (HEAD + b"Content-Type: text/plain; charset=iso-8859-1\n"
           b"Content-Transfer-Encoding: quoted-printable\n\nCaf=E9 cr=E8me =\nbr=FBl=E9e, 1+1=3D2\n")
    assert build_script.extract_body(raw).text == "Café crème brûlée, 1+1=2"


def test_multipart_prefers_plain_and_decodes_base64(build_script) -> None:
    plain = base64.b64encode("naïve plain text".encode())
    raw = (HEAD + b'MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary="B"\n\n'
           b"preamble\n--B\nContent-Type: text/html\n\n<p>html version</p>\n"
           b"--B\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
           + plain + b"\n--B--\n")
    body = build_script.extract_body(raw)
    assert body.text == "naïve plain text" and body.source == "text/plain"


def test_html_only_becomes_visible_text(build_script) -> None:
    raw = (HEAD + b"Content-Type: text/html\n\n<html><head><style>p {color: red}</style>"
           b"<script>alert(1)</script></head><body><p>Buy&nbsp;now &amp; save!</p>"
           b"<div>Click <a href='http://x'>here</a></div></body></html>\n")
    body = build_script.extract_body(raw)
    assert body.source == "text/html"
    assert body.text == "Buy now & save!\n\nClick here"


def test_charset_inherited_from_container(build_script) -> None:
    text = "中文正文"
    raw = (HEAD + b'Content-Type: multipart/mixed; boundary="Z"; charset="GB2312"\n\n'
           b"--Z\nContent-Type: text/plain\n\n" + text.encode("gb2312") + b"\n--Z--\n")
    assert build_script.extract_body(raw).text == text


def test_lost_multipart_header_is_repaired(build_script) -> None:
    raw = (HEAD + b"\nThis is a multipart MIME message.\n\n--= Boundary 1\n"
           b"Content-Type: text/plain\n\nreal text\n--= Boundary 1\nContent-Type: text/html\n\n"
           b"<b>html</b>\n--= Boundary 1--\n")
    body = build_script.extract_body(raw)
    assert body.text == "real text" and body.repairs == ("mime",)


def test_broken_header_block_is_removed(build_script) -> None:
    raw = (HEAD + b"\nDATA\nMessage-ID: <1@x>\nFrom: a@b\nReceived: from x by y\nContent-Type: text/plain\n"
           b"\nthe actual offer\n")
    body = build_script.extract_body(raw)
    assert body.text == "the actual offer" and body.repairs == ("headers",)


def test_quoted_headers_in_discussion_are_kept_but_x_spam_redacted(build_script) -> None:
    raw = (HEAD + b"\nLook at this one:\n\nReceived: from a by b\nX-Spam-Level: ****\n"
           b"Subject: hi\n\nWhat do you think of X-Spam-Status?\n")
    body = build_script.extract_body(raw)
    assert body.repairs == ()
    assert body.text.startswith("Look at this one:\n\nReceived: from a by b\n[redacted-header]: ****")
    assert "x-spam" not in body.text.lower() and body.redacted == 2


def test_split_rule_keeps_duplicates_together(build_script) -> None:
    records = [{"id": f"g-{g}/{i:05d}", "group": f"g-{g}", "text": f"body {i % 40}"}
               for g in (1, 2) for i in range(100)]
    split = build_script.assign_spam_splits(records)
    by_text: dict[str, set[str]] = {}
    for r in records:
        by_text.setdefault(r["text"], set()).add(split[r["id"]])
    assert all(len(s) == 1 for s in by_text.values())
    assert split == build_script.assign_spam_splits(list(reversed(records)))
