#!/usr/bin/env python3
"""Deterministic benchmark mailboxes, written as Maildir files (LF line ends, as mail tools do).

    bench_mail.py small DIR       20,000 small messages, about 77 MB
    bench_mail.py mixed DIR       3,000 mixed messages, about 90 MB, some with attachments
    bench_mail.py huge DIR        one message of about 200 MB
    bench_mail.py more DIR N SEED N further small messages (the "1% new" of a later run)

Text is built from the words of the corpus ($POPBACKUP_CORPUS) with a seeded generator, so runs
are repeatable and the mail compresses like real mail rather than like noise or like copies.
"""
import base64
import os
import random
import re
import sys

CORPUS = os.environ.get("POPBACKUP_CORPUS", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "corpus"))


class Words:
    """The corpus's words with their frequencies: text drawn from them reads like mail."""

    def __init__(self):
        counts = {}
        for root, _, files in sorted(os.walk(os.path.join(CORPUS, "messages"))):
            for name in sorted(files):
                with open(os.path.join(root, name), "rb") as f:
                    text = f.read().decode("latin-1")
                for w in re.findall(r"\b[a-z]{2,12}\b|\b[A-Z][a-z]{2,12}\b", text):
                    counts[w] = counts.get(w, 0) + 1
        self.words = sorted(w for w, c in counts.items() if c >= 3)
        if len(self.words) < 1000:
            sys.exit("bench_mail.py: the corpus is needed (set POPBACKUP_CORPUS)")
        total, self.cumulative = 0, []
        for w in self.words:
            total += counts[w]
            self.cumulative.append(total)

    def pick(self, rng, k=1):
        return rng.choices(self.words, cum_weights=self.cumulative, k=k)


def paragraph(rng, words, n):
    out, line = [], []
    for w in words.pick(rng, n):
        line.append(w)
        if len(" ".join(line)) > 68:
            out.append(" ".join(line))
            line = []
    if line:
        out.append(" ".join(line))
    return "\n".join(out)


PEOPLE = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"]
DOMAINS = ["example.org", "example.net", "mail.example.com", "lists.example.org"]


def message(rng, words, i, body_words, attachment=0):
    sender = f"{rng.choice(PEOPLE)}@{rng.choice(DOMAINS)}"
    subject = " ".join(words.pick(rng, rng.randint(2, 7)))
    day = 1 + i % 28
    headers = [
        f"Return-Path: <{sender}>",
        f"Received: from mx{rng.randint(1, 9)}.{rng.choice(DOMAINS)} by pop.example.org with ESMTPS id {rng.getrandbits(48):012x}; Mon, {day} Jun 2026 10:{i % 60:02d}:00 +0000",
        f"From: {sender.split('@')[0].title()} <{sender}>",
        f"To: user@example.org",
        f"Subject: {subject}",
        f"Date: Mon, {day} Jun 2026 10:{i % 60:02d}:{rng.randint(0, 59):02d} +0000",
        f"Message-ID: <{rng.getrandbits(64):016x}.{i}@{rng.choice(DOMAINS)}>",
        "MIME-Version: 1.0",
    ]
    text = "\n\n".join(paragraph(rng, words, max(8, body_words // 4)) for _ in range(4))
    if not attachment:
        headers.append("Content-Type: text/plain; charset=utf-8")
        return ("\n".join(headers) + "\n\n" + text + "\n").encode()
    boundary = f"=_b{rng.getrandbits(32):08x}"
    headers.append(f'Content-Type: multipart/mixed; boundary="{boundary}"')
    blob = rng.randbytes(attachment // 2) + bytes(attachment // 2)
    encoded = base64.encodebytes(blob).decode()
    return (
        "\n".join(headers)
        + f"\n\n--{boundary}\nContent-Type: text/plain; charset=utf-8\n\n{text}\n"
        + f"--{boundary}\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n"
        + f'Content-Disposition: attachment; filename="file{i}.bin"\n\n{encoded}--{boundary}--\n'
    ).encode()


def write(dirname, name, data):
    with open(os.path.join(dirname, name), "wb") as f:
        f.write(data)


def main():
    kind, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    words = Words()
    if kind == "small":
        rng = random.Random(20000)
        for i in range(20000):
            write(out, f"{1700000000 + i}.small{i:05d}.bench", message(rng, words, i, rng.randint(240, 900)))
    elif kind == "more":
        n, seed = int(sys.argv[3]), int(sys.argv[4])
        rng = random.Random(seed)
        for i in range(n):
            write(out, f"{1800000000 + seed * 100000 + i}.more{i:05d}.bench", message(rng, words, i, rng.randint(240, 900)))
    elif kind == "mixed":
        rng = random.Random(3000)
        for i in range(3000):
            attachment = rng.choice([150_000, 250_000, 400_000]) if i % 10 == 0 else 0
            write(out, f"{1700000000 + i}.mixed{i:05d}.bench", message(rng, words, i, rng.randint(300, 3000), attachment))
    elif kind == "huge":
        rng = random.Random(200)
        write(out, "1700000000.huge.bench", message(rng, words, 0, 500, 150_000_000))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
