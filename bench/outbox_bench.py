"""The outbox and its sender: rows added per second, and reports delivered per second to
the validating fake GitHub of the tests (statuses with a token; check runs, created then
updated, with an App), on SQLite or PostgreSQL. Prints figures only; asserts nothing.

Usage: .venv/bin/python bench/outbox_bench.py [-n 300] [--db sqlite:///tmp/x.db]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from vmrunner.github.client import GitHubClient
from vmrunner.github.reports import ItemFacts
from vmrunner.services.reporting import Reporter, Sender
from vmrunner.store.engine import open_store

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from github.fake import FakeGitHub  # the tests' fake, after the path insert


def _key() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()  # fmt: skip
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()  # fmt: skip
    return private, public


def _drain(sender: Sender) -> int:
    sent = 0
    while sender.outbox.counts()["pending"]:
        sent += sender.send_once()
    return sent


def run(mode: str, url: str, n: int, fake: FakeGitHub, private: str) -> None:
    store = open_store(url)
    try:
        reporter = Reporter(store, mode)
        jobs = [(f"job{i}", f"Job {i}") for i in range(n)]
        facts = ItemFacts("octo/bench", "f" * 40, ".github/workflows/ci.yml", "CI", 1)
        start = time.perf_counter()
        reporter.queued(facts, jobs)
        reporter.started(facts, jobs)
        added = time.perf_counter() - start
        client = (GitHubClient(fake.url, app_id="1", private_key=private) if mode == "app"
                  else GitHubClient(fake.url, token="t"))  # fmt: skip
        sender = Sender(store, client)
        start = time.perf_counter()
        sent = _drain(sender)
        took = time.perf_counter() - start
        print(
            f"{mode:<6} {store.dialect:<10} add {2 * n / added:8.0f} rows/s   "
            f"send {sent / took:7.1f} reports/s ({sent} reports, {took:.2f} s)"
        )
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=300, help="jobs (two reports each)")
    parser.add_argument("--db", default="", help="database URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    private, public = _key()
    fake = FakeGitHub(app_id="1", public_key_pem=public, tokens=("t",), installations={"octo": 9})
    fake.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for mode in ("token", "app"):
                url = args.db or f"sqlite:///{tmp}/{mode}.db"
                run(mode, url, args.n, fake, private)
    finally:
        fake.close()
    print(f"fake GitHub violations: {len(fake.violations)}")


if __name__ == "__main__":
    main()
