"""The fake GitHub fixtures (self-contained: they may move to tests/conftest.py).

``github_fake`` is a started :class:`FakeGitHub` that accepts the token ``TOKEN`` and
the App ``APP_ID`` (JWTs signed with ``github_app_key``), installed on the owner
``octo`` as installation ``INSTALLATION``. A test that leaves a violation behind fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .fake import FakeGitHub

TOKEN = "ghp_test_token"
APP_ID = "4242"
INSTALLATION = 77


@dataclass(frozen=True)
class AppKey:
    private_pem: str
    public_pem: str


@pytest.fixture(scope="session")
def github_app_key() -> AppKey:
    """An RSA key for the test App, made once per session."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()  # fmt: skip
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()  # fmt: skip
    return AppKey(private, public)


@pytest.fixture
def github_fake(github_app_key: AppKey) -> Iterator[FakeGitHub]:
    fake = FakeGitHub(app_id=APP_ID, public_key_pem=github_app_key.public_pem, tokens=(TOKEN,),
                      installations={"octo": INSTALLATION}).start()  # fmt: skip
    try:
        yield fake
    finally:
        fake.close()
    assert fake.violations == [], "requests GitHub would refuse:\n" + "\n".join(fake.violations)
