"""What a stage's outputs become on the wire: each slot its frames, reply audio cut into chunks.

The contract of a kind (deployments.kinds) says which slots become frames and in which order; how they
look on the wire, and how long an audio frame is, is the pipeline's business.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from deployments.kinds import Contract, render_slot
from omniwire.audio import to_pcm16
from omniwire.frames import EmotionFrame, Frame, LLMTextFrame, TextFrame, TranscriptionFrame, TTSAudioFrame

AUDIO_CHUNK_S = 0.5  # reply audio goes out in frames of this length


def _audio_frames(stage: str, outputs: dict[str, Any], piece: int) -> list[Frame]:
    audio = outputs["reply_audio"]
    samples, rate = audio["samples"], audio["sample_rate"]
    step = int(rate * AUDIO_CHUNK_S)
    text = outputs.get("reply_text", "")
    return [
        TTSAudioFrame(audio=to_pcm16(samples[i : i + step]), sample_rate=rate, sentence=piece, text=text)
        for i in range(0, max(len(samples), 1), step)
    ]


# The frames a slot's value becomes, as (stage name, the stage's outputs, piece index) -> frames.
# A streamed slot's pieces go through the same function, one piece at a time.
SLOT_FRAMES: dict[str, Callable[[str, dict[str, Any], int], list[Frame]]] = {
    "transcript": lambda stage, out, _: [TranscriptionFrame(text=out["transcript"], stage=stage)],
    "emotion": lambda stage, out, _: [EmotionFrame(emotion=out["emotion"])],
    "context": lambda stage, out, _: [TextFrame(text=render_slot("context", out["context"]), stage=stage)],
    "image_text": lambda stage, out, _: [TextFrame(text=render_slot("image_text", out["image_text"]), stage=stage)],
    "reply_text": lambda stage, out, _: [LLMTextFrame(text=out["reply_text"], stage=stage)],
    "reply_audio": _audio_frames,
}


def output_frames(contract: Contract, stage: str, outputs: dict[str, Any], piece: int = 0) -> list[Frame]:
    """The frames of a stage's outputs (or of one piece of a streamed slot), in its contract's order."""
    return [frame for slot in contract.frames if slot in outputs for frame in SLOT_FRAMES[slot](stage, outputs, piece)]
