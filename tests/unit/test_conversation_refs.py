"""The conversations layout's trims name messages by sequence number; a trim cuts the run its refs cover
from the smallest on (tests/integration/test_layouts.py cuts real arrays with it)."""

from __future__ import annotations

from memcompress.repositories.conversations import conversation_key, trimmed_through


def test_the_run_from_the_smallest_sequence_number() -> None:
    assert trimmed_through([{"seq": 5}, {"seq": 3}, {"seq": 4}]) == (3, 6)
    assert trimmed_through([{"seq": 0}, {"seq": 1}, {"seq": 3}]) == (0, 2)  # 2 missing: the run ends
    assert trimmed_through([{"seq": 2}, {"seq": 2}]) == (2, 3)


def test_refs_that_name_no_message_cut_nothing() -> None:
    assert trimmed_through([]) is None
    assert trimmed_through([{"_id": 1}, "bare", {"seq": "1"}]) is None


def test_conversation_ids_read_as_the_apps_object_ids() -> None:
    key = conversation_key("6650f0c2a1b2c3d4e5f60718")
    assert str(key) == "6650f0c2a1b2c3d4e5f60718" and not isinstance(key, str)
    assert conversation_key("chat-1") == "chat-1"
