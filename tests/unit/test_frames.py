"""FrameBuilder: the batch frame's encoded size against the limit (to the byte), the spliced ``seq`` giving
exactly what the message models serialize, and the spec format's one message per item."""

from __future__ import annotations

import json

from chalicelib.models.streaming import BatchMessage, SequencedQuoteUpdate, StreamFormat, quote_update
from chalicelib.services.frames import FrameBuilder, FrameTarget
from tests.real_rounds import daily_quotes
from tests.ws_protocol import assert_server_message, document

NOW = 1_517_950_800.0  # 2018-02-06T21:00:00Z
UPDATES = [quote_update(q) for q in daily_quotes()[1]]
TOPICS = frozenset(u.topic for u in UPDATES)


def _batch_frames(limit: int, seq: int = 7) -> list[bytes]:
    (pending,) = FrameBuilder(max_frame_bytes=limit).for_round(
        [FrameTarget("c", StreamFormat.BATCH, TOPICS)], UPDATES, timestamp=NOW
    )
    return [frame.render(seq + i) for i, frame in enumerate(pending.frames)]


def test_the_rendered_batch_frame_is_what_the_model_serializes() -> None:
    (raw,) = _batch_frames(32 * 1024)
    parsed = BatchMessage.model_validate_json(raw)
    assert raw == parsed.model_dump_json(by_alias=True).encode()
    assert parsed.seq == 7
    assert json.loads(raw)["timestamp"] == "2018-02-06T21:00:00Z"
    assert_server_message(json.loads(raw))


def test_a_frame_that_fits_to_the_byte_is_not_split_and_one_byte_less_splits_it() -> None:
    (whole,) = _batch_frames(32 * 1024, seq=1)
    # The limit is sized for the largest sequence number (19 digits), so "1" leaves 18 bytes of slack.
    exact = len(whole) + len(str(2**63)) - 1
    assert len(_batch_frames(exact, seq=1)) == 1
    split = _batch_frames(exact - 1, seq=1)
    assert len(split) == 2
    assert all(len(raw) <= exact - 1 for raw in split)
    carried = [u["data"]["symbol"] for raw in split for u in json.loads(raw)["data"]["updates"]]
    assert carried == [u.message.data.symbol for u in UPDATES]  # type: ignore[union-attr]


def test_the_spec_format_is_one_message_per_item_with_its_seq() -> None:
    targets = [FrameTarget("s", StreamFormat.SPEC, frozenset(list(TOPICS)[:3]))]
    (pending,) = FrameBuilder().for_round(targets, UPDATES, timestamp=NOW)
    rendered = [frame.render(40 + i) for i, frame in enumerate(pending.frames)]
    assert len(rendered) == 3
    by_topic = {u.topic: u for u in UPDATES}
    for i, raw in enumerate(rendered):
        parsed = SequencedQuoteUpdate.model_validate_json(raw)
        assert parsed.seq == 40 + i
        original = by_topic[pending.frames[i].topics[0]]
        assert json.loads(raw) == {**json.loads(original.encoded()), "seq": 40 + i}


def test_a_connection_subscribed_to_nothing_that_changed_gets_nothing() -> None:
    targets = [FrameTarget("x", StreamFormat.BATCH, frozenset({"quote:ZZZZ"}))]
    assert FrameBuilder().for_round(targets, UPDATES, timestamp=NOW) == []


def test_a_stale_value_says_so_in_both_formats_and_the_document_has_the_field() -> None:
    fresh = daily_quotes()[1][0]
    stale = quote_update(fresh.as_stale())
    assert quote_update(fresh).message.data.stale is False
    # A value turning stale is a change worth sending: its fingerprint differs from the fresh one's.
    assert stale.fingerprint != quote_update(fresh).fingerprint
    target = frozenset({stale.topic})
    (spec,) = FrameBuilder().for_round([FrameTarget("s", StreamFormat.SPEC, target)], [stale], timestamp=NOW)
    (batch,) = FrameBuilder().for_round([FrameTarget("b", StreamFormat.BATCH, target)], [stale], timestamp=NOW)
    spec_message = json.loads(spec.frames[0].render(1))
    batch_message = json.loads(batch.frames[0].render(1))
    assert spec_message["data"]["stale"] is True
    assert batch_message["data"]["updates"][0]["data"]["stale"] is True
    assert_server_message(spec_message)
    assert_server_message(batch_message)
    # The published document declares it for every update (a message without it would still validate).
    schemas = document()["components"]["schemas"]
    for data in ("QuoteUpdateData", "MarketUpdateData", "SectorUpdateData", "SentimentUpdateData"):
        assert schemas[data]["properties"]["stale"]["type"] == "boolean"
