#!/usr/bin/env python3
"""Known-answer vectors for encrypted media format v1 (docs/format-v1.md).

An independent implementation of the format, written from docs/format-v1.md with the
`cryptography` package's AES-256-GCM (OpenSSL underneath); it never calls custodian. It writes
the vectors and an index to fixtures/crypto/kat/, which the Rust tests decrypt and re-create
byte for byte. Everything is deterministic: run it again and git shows no change.

    python3 scripts/kat.py [OUT_DIR]     (needs: pip install cryptography)
"""

import hashlib
import json
import os
import struct
import sys

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"CSTDNENC"
VERSION = 1
TAG_LEN = 16


def plaintext(length, seed):
    """Byte i is (i * 31 + seed) mod 251: no period that lines up with a chunk size."""
    return bytes((i * 31 + seed) % 251 for i in range(length))


def key_bytes(n):
    """Key n: byte i is (n * 17 + i * 7) mod 256."""
    return bytes((n * 17 + i * 7) % 256 for i in range(32))


def header(key_id, chunk_size, nonce_prefix):
    kid = key_id.encode("utf-8")
    assert 1 <= len(kid) <= 255 and 4096 <= chunk_size <= 16 * 1024 * 1024
    assert len(nonce_prefix) == 7
    return MAGIC + bytes([VERSION, len(kid)]) + kid + struct.pack("<I", chunk_size) + nonce_prefix


def encrypt(key, key_id, chunk_size, nonce_prefix, plain):
    """Format v1: every chunk full but the last; an empty plaintext is one empty chunk."""
    head = header(key_id, chunk_size, nonce_prefix)
    aead = AESGCM(key)
    chunks = [plain[i : i + chunk_size] for i in range(0, len(plain), chunk_size)] or [b""]
    out = [head]
    for index, chunk in enumerate(chunks):
        last = index == len(chunks) - 1
        nonce = nonce_prefix + struct.pack(">I", index) + (b"\x01" if last else b"\x00")
        out.append(aead.encrypt(nonce, chunk, head))  # ciphertext followed by the 16-byte tag
    return b"".join(out)


# name, key number, key id, chunk size, plaintext length, plaintext seed
CASES = [
    ("empty", 1, "k", 4096, 0, 1),
    ("short", 2, "kat-key-2", 4096, 1000, 2),
    ("one-chunk", 3, "kat-key-3", 4096, 4096, 3),
    ("two-chunks-last-full", 4, "kat-key-4", 4096, 8192, 4),
    ("two-and-a-half-chunks", 5, "kat-key-5", 4096, 10240, 5),
    ("odd-chunk-size", 6, "tenant/acme/2026-01", 5000, 12500, 6),
    ("long-key-id", 7, "k" * 255, 4096, 4097, 7),
    ("utf8-key-id", 8, "clé-€-鍵", 4096, 100, 8),
]


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "fixtures", "crypto", "kat")
    os.makedirs(out_dir, exist_ok=True)
    index = []
    for n, (name, key_no, key_id, chunk_size, length, seed) in enumerate(CASES):
        key = key_bytes(key_no)
        nonce_prefix = bytes((0xA0 + n + i) % 256 for i in range(7))
        plain = plaintext(length, seed)
        sealed = encrypt(key, key_id, chunk_size, nonce_prefix, plain)
        file = name + ".enc"
        with open(os.path.join(out_dir, file), "wb") as f:
            f.write(sealed)
        index.append(
            {
                "file": file,
                "key_id": key_id,
                "key_hex": key.hex(),
                "chunk_size": chunk_size,
                "nonce_prefix_hex": nonce_prefix.hex(),
                "plaintext": {"formula": "byte i = (i * 31 + seed) % 251", "len": length, "seed": seed},
                "plaintext_sha256": hashlib.sha256(plain).hexdigest(),
                "sha256": hashlib.sha256(sealed).hexdigest(),
            }
        )
    with open(os.path.join(out_dir, "index.json"), "w", encoding="utf-8") as f:
        json.dump({"format": 1, "generator": "scripts/kat.py", "vectors": index}, f, indent=2, ensure_ascii=False)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(out_dir, v["file"])) for v in index)
    print(f"wrote {len(index)} vectors ({total} bytes) and index.json to {out_dir}")


if __name__ == "__main__":
    main()
