"""Featureset algebra: CPUID featuresets as tuples of unsigned 32-bit words (spec §2).

Mirrors xen-api ``ocaml/xapi/cpuid_helpers.ml`` (Dundee, 27c06009b1) and, for the 2018
zero-extending comparison, dundee-lcm ``bd0a33d404`` / HEAD ``ocaml/libs/cpuid/cpuid.ml``.
The levelling-v1 helpers mirror the pre-Dundee ``cpuid/cpuid.ml`` parser and the old-style
upgrade of xenopsd ``HOST.upgrade_cpu_features`` (spec §2.5, §11).

A featureset is a ``tuple[int, ...]``; Xen only ever appends words, so sets of different
lengths are related by zero-extension.  All functions are pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

Featureset = tuple[int, ...]  # 32-bit words

WORD_MASK = 0xFFFFFFFF
SEMANTICS = ("dundee", "2018")
OLDSTYLE_MODES = ("reorder", "identity", "empty")

_PIECE = re.compile(r"[0-9a-fA-F]{1,8}")
_HEXDIGITS = frozenset("0123456789abcdefABCDEF")


class InvalidFeatureString(ValueError):
    """A featureset string that does not parse (OCaml ``InvalidFeatureString``, spec §2.1)."""


# --- printing and parsing (§2.1) ---------------------------------------------------------


def parse(s: str) -> Featureset:
    """Parse ``"0000000a-b"`` into words: pieces of 1-8 hex digits joined by ``-`` (§2.1)."""
    if s == "":
        return ()
    words = []
    for piece in s.split("-"):
        if not _PIECE.fullmatch(piece):
            raise InvalidFeatureString(s)
        words.append(int(piece, 16))
    return tuple(words)


def format(fs: Iterable[int]) -> str:  # noqa: A001 - the spec's name for the printer
    """Print words as ``%08x`` joined by ``-``; the empty set prints as ``""`` (§2.1)."""
    out = []
    for w in fs:
        if not 0 <= w <= WORD_MASK:
            raise ValueError(f"featureset word out of range: {w!r}")
        out.append(f"{w:08x}")
    return "-".join(out)


# --- primitive operations (§2.2) ---------------------------------------------------------


def zero_extend(a: Sequence[int], n: int) -> Featureset:
    """Pad ``a`` with zero words to length ``n``, or truncate it to ``n`` (§2.2)."""
    a = tuple(a)
    return a[:n] + (0,) * (n - len(a))


def extend(a: Sequence[int], b: Sequence[int]) -> Featureset:
    """Length of ``b``: ``a``'s words over the common prefix, then ``b``'s words (§2.2)."""
    a, b = tuple(a), tuple(b)
    return a[: len(b)] + b[len(a) :]


def intersect(a: Sequence[int], b: Sequence[int]) -> Featureset:
    """Word-wise AND, zero-extending the shorter side; the empty set is an identity (§2.2)."""
    a, b = tuple(a), tuple(b)
    if not a:
        return b
    if not b:
        return a
    n = max(len(a), len(b))
    return tuple(x & y for x, y in zip(zero_extend(a, n), zero_extend(b, n), strict=True))


def is_equal(a: Sequence[int], b: Sequence[int]) -> bool:
    """Equality after zero-extending both sides to the longer length (§2.2, 2018)."""
    n = max(len(a), len(b))
    return zero_extend(a, n) == zero_extend(b, n)


def _check_semantics(semantics: str) -> None:
    if semantics not in SEMANTICS:
        raise ValueError(f"unknown featureset semantics {semantics!r}; use one of {SEMANTICS}")


def is_subset(a: Sequence[int], b: Sequence[int], semantics: str = "dundee") -> bool:
    """``a ⊆ b``: Dundee wants ``a ∩ b`` to equal ``a`` exactly, 2018 up to zeros (§2.2)."""
    _check_semantics(semantics)
    meet = intersect(a, b)
    if semantics == "dundee":
        return meet == tuple(a)
    return is_equal(meet, a)


def is_strict_subset(a: Sequence[int], b: Sequence[int], semantics: str = "dundee") -> bool:
    """Subset and not equal: plain list inequality in Dundee, zero-extended in 2018 (§2.2)."""
    if not is_subset(a, b, semantics):
        return False
    if semantics == "dundee":
        return tuple(a) != tuple(b)
    return not is_equal(a, b)


def diff(a: Sequence[int], b: Sequence[int]) -> Featureset:
    """Bits of ``a`` missing from ``b`` (``a AND NOT b``), zero-extended (§2.2, HEAD)."""
    n = max(len(a), len(b))
    return tuple(
        x & ~y & WORD_MASK for x, y in zip(zero_extend(a, n), zero_extend(b, n), strict=True)
    )


# --- levelling v1 (old-style, 4-word) format (§2.5, §11) ---------------------------------


def parse_oldstyle(s: str) -> Featureset:
    """Parse a v1 mask: spaces and dashes ignored, exactly 32 hex digits, 4 words (§2.5)."""
    digits = s.replace(" ", "").replace("-", "")
    if any(c not in _HEXDIGITS for c in digits):
        raise InvalidFeatureString("String contains illegal character")
    if len(digits) != 32:
        raise InvalidFeatureString("String is not of the right length")
    return tuple(int(digits[i : i + 8], 16) for i in range(0, 32, 8))


def format_oldstyle(words: Sequence[int]) -> str:
    """Print a 4-word v1 value (ecx, edx, ext_ecx, ext_edx) as ``%08x-%08x-%08x-%08x`` (§2.5)."""
    if len(words) != 4:
        raise ValueError(f"an old-style featureset has 4 words, not {len(words)}")
    return format(words)


def upgrade_oldstyle(
    vm_words: Sequence[int], host_set: Sequence[int], is_hvm: bool, mode: str = "reorder"
) -> Featureset:
    """Translate a ≤4-word v1 VM set into the new layout (xenopsd upgrade_cpu_features, §11).

    ``mode="reorder"`` (default, spec §11 recommendation): ``()`` stays ``()`` (so the later
    ``extend`` hands the VM the host's set); otherwise the words, zero-extended to 4, are
    reordered from (1c, 1d, e1c, e1d) to Xen's (1d, 1c, e1d, e1c) and ANDed with the host's
    first four words.  ``"identity"`` returns the words unchanged (xen-api ``cba67d5457``).
    ``"empty"`` returns ``()`` for every input, like xenopsd's simulator backend (review §5).
    ``is_hvm`` is accepted for fidelity; the host set passed is already the PV or HVM one.
    """
    del is_hvm  # the caller has already chosen the PV or HVM host set
    if mode not in OLDSTYLE_MODES:
        raise ValueError(f"unknown old-style upgrade mode {mode!r}; use one of {OLDSTYLE_MODES}")
    vm = tuple(vm_words)
    if mode == "empty" or not vm:
        return ()
    if mode == "identity":
        return vm
    ecx, edx, ext_ecx, ext_edx = zero_extend(vm, 4)
    host = zero_extend(host_set, 4)
    return tuple(w & h for w, h in zip((edx, ecx, ext_edx, ext_ecx), host, strict=True))


def upgrade_vm_features(
    cur_words: Sequence[int], host_set: Sequence[int], is_hvm: bool, mode: str = "reorder"
) -> Featureset:
    """Resize a VM set to a host: ≤4 words upgrade+extend, else zero-extend/truncate (§11)."""
    cur, host = tuple(cur_words), tuple(host_set)
    if len(cur) <= 4:
        return extend(upgrade_oldstyle(cur, host, is_hvm, mode), host)
    return zero_extend(cur, len(host))
