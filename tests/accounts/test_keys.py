import hashlib
import re
import tracemalloc

from accounts import keys


def test_new_keys_are_hc_live_and_40_base62_characters():
    key = keys.generate_key()
    assert re.fullmatch(r"hc_live_[A-Za-z0-9]{40}", key)


def test_new_keys_differ():
    assert len({keys.generate_key() for _ in range(1000)}) == 1000


def test_hash_is_sha256_hex_of_the_whole_key_as_the_legacy_system_stored_it():
    key = "mp_live_legacyKey123"
    assert keys.hash_key(key) == hashlib.sha256(key.encode()).hexdigest()


def test_display_prefix_is_short_and_not_the_secret():
    key = keys.generate_key()
    prefix = keys.display_prefix(key)
    assert key.startswith(prefix)
    assert len(prefix) == 12


def test_normalize_accepts_both_prefixes_and_forgives_surrounding_whitespace():
    assert keys.normalize("hc_live_abc") == "hc_live_abc"
    assert keys.normalize("mp_live_abc\n") == "mp_live_abc"


def test_normalize_refuses_what_cannot_be_a_key():
    for bad in ["", "hc_live_", "sk_live_abc", "HC_LIVE_abc", None, 42, b"hc_live_abc", "x" * 10_000]:
        assert keys.normalize(bad) is None


def test_checking_a_huge_input_uses_constant_memory():
    huge = "hc_live_" + "a" * 50_000_000
    tracemalloc.start()
    try:
        assert keys.normalize(huge) is None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10_000
