import asyncio
import json

import pytest

from omniwire.frames import (
    FRAME_TYPES,
    EndFrame,
    ErrorFrame,
    Frame,
    FrameQueue,
    LLMTextFrame,
    MetricsFrame,
    StartFrame,
    StartInterruptionFrame,
    TextFrame,
    TranscriptionFrame,
    TTSAudioFrame,
    WireReader,
    from_wire,
    to_wire_binary,
)


def test_every_frame_belongs_to_one_family():
    assert {cls.family for cls in FRAME_TYPES.values()} == {"system", "control", "data"}
    assert ErrorFrame.family == "system" and StartFrame.family == "control" and LLMTextFrame.family == "data"


@pytest.mark.parametrize(
    "frame",
    [
        TTSAudioFrame(audio=b"\x01\x00\xff\x7f", sample_rate=22050, sentence=2, text="Hello."),
        TranscriptionFrame(text="what is the weather", stage="speech_to_text"),
        MetricsFrame(stage="hf_llm", metrics={"ttfb_s": 0.12, "processing_s": 1.5}),
        EndFrame(track_id="T-X-" + "0" * 32, turn=3, status="cancelled"),
    ],
)
def test_frames_survive_the_wire_as_json(frame):
    wire = json.loads(json.dumps(frame.to_wire()))
    assert wire["type"] == type(frame).__name__
    back = from_wire(wire)
    assert back == frame


def test_audio_is_base64_on_the_wire():
    wire = TTSAudioFrame(audio=b"\x00\x01", sample_rate=16000).to_wire()
    assert wire["audio"] == "AAE="


def test_audio_plays_for_its_samples_over_the_rate():
    assert TTSAudioFrame(audio=b"\x00" * 44100, sample_rate=22050).seconds == 1.0
    assert TTSAudioFrame(audio=b"\x00" * 44100, sample_rate=22050, num_channels=2).seconds == 0.5


def test_bad_wire_objects_are_named():
    with pytest.raises(ValueError, match="unknown frame type 'Nope'"):
        from_wire({"type": "Nope"})
    with pytest.raises(ValueError, match="TranscriptionFrame: .*text"):
        from_wire({"type": "TranscriptionFrame"})


def test_system_frames_overtake_queued_data_frames():
    async def scenario():
        queue = FrameQueue()
        for i in range(3):
            queue.put(TTSAudioFrame(audio=b"", sample_rate=16000, sentence=i))
        queue.put(StartInterruptionFrame())
        queue.put(LLMTextFrame(text="late"))
        first = await queue.get()
        dropped = queue.drop(TTSAudioFrame)
        rest = [await queue.get()]
        return first, dropped, rest, queue.empty()

    first, dropped, rest, empty = asyncio.run(scenario())
    assert isinstance(first, StartInterruptionFrame)
    assert dropped == 3
    assert [type(f) for f in rest] == [LLMTextFrame] and empty


def test_frames_are_ordered_by_creation():
    a, b = Frame(), Frame()
    assert b.seq > a.seq and b.ts >= a.ts


def test_reply_audio_goes_as_a_header_and_a_binary_message_and_reads_back_whole():
    frame = TTSAudioFrame(audio=b"\x01\x02" * 800, sample_rate=22_050, sentence=2, text="Hello there.")
    header, payload = to_wire_binary(frame)
    assert header["binary"] == "audio" and "audio" not in header and payload == frame.audio
    assert len(json.dumps(header)) < 200, "the header carries no audio"
    reader = WireReader()
    assert reader.text(json.loads(json.dumps(header))) is None
    assert reader.binary(payload) == frame
    assert isinstance(reader.text(TextFrame(text="hi").to_wire()), TextFrame)
    assert to_wire_binary(TextFrame(text="hi"))[1] is None


def test_a_binary_message_out_of_place_is_named():
    reader = WireReader()
    with pytest.raises(ValueError, match="no frame header"):
        reader.binary(b"\x00\x00")
    reader.text({**TTSAudioFrame(audio=b"", sample_rate=16_000).to_wire(), "binary": "audio"})
    with pytest.raises(ValueError, match="not followed by its binary message"):
        reader.text(TextFrame(text="hi").to_wire())
