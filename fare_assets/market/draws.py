"""Deterministic pseudo-random draws keyed by their meaning, so every market fact is reproducible."""
import base64
import hashlib
import math

_TWO_TO_64 = float(2**64)


def _digest(parts: tuple, size: int) -> bytes:
    key = "|".join(map(str, parts)).encode()
    return hashlib.blake2b(key, digest_size=size).digest()


def unit(*parts) -> float:
    """A uniform draw in [0, 1) that depends only on `parts`."""
    return int.from_bytes(_digest(parts, 8), "big") / _TWO_TO_64


def normal(*parts) -> float:
    """A standard normal draw (Box-Muller on two keyed uniforms) that depends only on `parts`."""
    digest = _digest(parts, 16)
    u1 = (int.from_bytes(digest[:8], "big") + 1) / (_TWO_TO_64 + 1)
    u2 = int.from_bytes(digest[8:], "big") / _TWO_TO_64
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def token(length: int, *parts) -> str:
    """An opaque URL-safe identifier of `length` characters that depends only on `parts`."""
    raw = _digest(parts, 48)
    return base64.urlsafe_b64encode(raw).decode()[:length]
