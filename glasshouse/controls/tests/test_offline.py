"""The offline access code, with a fixed key and time, as a vector the agent team can mirror.

The expected MACs were computed independently with
`printf 'h8h4o:0781:5567:4C530001234' | openssl dgst -sha256 -hmac 12345678901234567890 -binary | base32`
(the key below is base32 of the ASCII "12345678901234567890")."""

from __future__ import annotations

import base64

from glasshouse.controls.offline import new_offline_key, offline_code, to_base36

KEY = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
# 2025-01-15 10:00 UTC as an epoch minute: 1736935200 // 60.
UNTIL_MINUTE = 28_948_920


def test_fixed_vector_with_serial() -> None:
    assert offline_code(KEY, UNTIL_MINUTE, "0781", "5567", "4C530001234") == "h8h4o-07815567-62VR6MFI3D"


def test_fixed_vector_for_any_serial() -> None:
    assert offline_code(KEY, UNTIL_MINUTE, "0781", "5567", "") == "h8h4o-07815567-GBKGIXTDOZ"


def test_every_input_changes_the_mac() -> None:
    base = offline_code(KEY, UNTIL_MINUTE, "0781", "5567", "")
    others = {
        offline_code(KEY, UNTIL_MINUTE + 1, "0781", "5567", ""),
        offline_code(KEY, UNTIL_MINUTE, "0781", "5568", ""),
        offline_code(KEY, UNTIL_MINUTE, "0782", "5567", ""),
        offline_code(KEY, UNTIL_MINUTE, "0781", "5567", "X"),
        offline_code(new_offline_key(), UNTIL_MINUTE, "0781", "5567", ""),
    }
    assert base not in others
    assert len({c.rsplit("-", 1)[1] for c in others}) == 5


def test_base36_round_trips() -> None:
    for n in (0, 35, 36, UNTIL_MINUTE, 10**12):
        assert int(to_base36(n), 36) == n
    assert to_base36(UNTIL_MINUTE) == "h8h4o"


def test_new_keys_are_32_base32_characters_of_20_random_bytes() -> None:
    key = new_offline_key()
    assert len(key) == 32
    assert len(base64.b32decode(key)) == 20
    assert key != new_offline_key()
