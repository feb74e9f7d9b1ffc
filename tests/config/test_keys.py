from aigw.config.keys import KEY_HASH_PATTERN, display_prefix, generate_key, hash_key


def test_generated_keys_are_unique_prefixed_and_hash_to_the_stored_form() -> None:
    keys = {generate_key() for _ in range(100)}
    assert len(keys) == 100
    key = keys.pop()
    assert key.startswith("sk-aigw-") and len(key) > 40
    assert KEY_HASH_PATTERN.match(hash_key(key))
    assert hash_key(key) == hash_key(key)
    assert display_prefix(key) == key[:12] and display_prefix(key) in key
