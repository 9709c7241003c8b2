"""omni-client: talk to an OmniServe server from a terminal, send it recordings, inspect tracks.

Exit codes: 0 done; 1 the server refused or a turn failed; 2 bad local input or no audio
device; 3 the server cannot be reached; 130 interrupted with Ctrl-C.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

import soundfile as sf
from rich.console import Console
from rich.text import Text

from client.api import OmniServeClient, OmniServeError, ServerUnreachable
from client.audio import AudioDeviceError, AudioSink, FileSink, FileSource, MicrophoneSource, SpeakerSink
from client.camera import Camera, CameraError, video_frames
from client.show import TurnView, clusters_table, track_tables
from client.talk import LiveTalk, TurnTaking
from omniwire.audio import decode, encode_wav, from_pcm16, to_pcm16
from omniwire.frames import EndFrame, TTSAudioFrame

DEFAULT_URL = "http://127.0.0.1:8000"
# The fastest local cluster, whose int4 LLM also answers best (README, "Which LLM, and why").
DEFAULT_CLUSTER = "CLUSTER_Q_NO_EMOTION_ETE_CONVERSATION"
EXIT_REFUSED, EXIT_BAD_INPUT, EXIT_UNREACHABLE, EXIT_CTRL_C = 1, 2, 3, 130
# Answers that end one turn but leave the track usable: no speech heard (422), a stage failed (502).
TURN_FAILURES = {422, 502}


class InputError(ValueError):
    """A local file the command cannot use."""


def audio_file(path: str) -> Path:
    """A recording soundfile can read, checked here so a bad file is named before anything is sent."""
    file = Path(path)
    if not file.is_file():
        raise InputError(f"no such audio file: {path}")
    try:
        sf.info(file)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise InputError(f"{path} is not audio soundfile can read: {exc}") from None
    return file


def image_file(path: str) -> tuple[str, bytes]:
    file = Path(path)
    if not file.is_file():
        raise InputError(f"no such image file: {path}")
    return file.name, file.read_bytes()


def talk(args: argparse.Namespace, client: OmniServeClient, console: Console) -> int:
    inputs = [audio_file(path) for path in args.input]
    sink: AudioSink = FileSink(args.output) if args.output else SpeakerSink(args.output_device)
    turns = TurnTaking(sink, barge_in_s=args.barge_in)
    source = FileSource(inputs, may_start=turns.may_speak) if inputs else MicrophoneSource(args.input_device)
    camera = Camera(args.camera, args.fps) if args.camera is not None else None
    vad = {"min_silence_ms": args.silence_ms} if args.silence_ms else None
    with sink, camera or contextlib.nullcontext():
        with client.live(
            cluster=cluster_of(args),
            track_id=args.track_id,
            sample_rate=source.rate,
            allow_interruptions=not args.no_interruptions,
            vad=vad,
        ) as live:
            start = live.start
            how = f"speaking {len(inputs)} file(s)" if inputs else "listening: speak, and Ctrl-C to hang up"
            console.print(Text.assemble(("track ", "bold"), start.track_id, f" on {start.cluster}; {how}"))
            try:
                LiveTalk(live, source, sink, TurnView(console), turns, camera, args.timeout).run()
            except KeyboardInterrupt:
                sink.interrupt()
                console.print("hung up")
    if args.output:
        console.print(f"reply audio played: {sink.seconds(sink.played):.2f} s, written to {args.output}")
    console.print(f"track {start.track_id}  (omni-client trace {start.track_id})")
    return 0


def send(args: argparse.Namespace, client: OmniServeClient, console: Console) -> int:
    recordings = [audio_file(path) for path in args.files]
    images = [image_file(path) for path in args.image]
    if args.video:
        stem = Path(args.video).stem
        images += [
            (f"{stem}-{i:03d}.jpg", jpeg) for i, jpeg in enumerate(video_frames(args.video, args.fps, args.max_frames))
        ]
    save = Path(args.save) if args.save else None
    sink = SpeakerSink(args.output_device) if args.play else None
    with sink or contextlib.nullcontext():
        track_id, failed = send_turns(args, client, console, recordings, images, save, sink)
    if save:
        console.print(f"reply audio saved in {save}")
    if track_id:
        console.print(f"track {track_id}  (omni-client trace {track_id})")
    return EXIT_REFUSED if failed else 0


def send_turns(
    args: argparse.Namespace,
    client: OmniServeClient,
    console: Console,
    recordings: list[Path],
    images: list[tuple[str, bytes]],
    save: Path | None,
    sink: AudioSink | None,
) -> tuple[str | None, bool]:
    """One turn per recording on one track; returns the track and whether any turn failed."""
    track_id, cluster, failed = args.track_id, cluster_of(args), False
    view = TurnView(console)
    for path in recordings:
        console.rule(Text(path.name))
        turn = dict(
            audio=path.read_bytes(),
            filename=path.name,
            images=images,
            track_id=track_id,
            cluster=None if track_id else cluster,
        )
        if args.stream:
            track_id, number, status, reply = streamed_turn(client, turn, view, console, sink)
        else:
            track_id, number, status, reply = whole_turn(client, turn, view, console, want_audio=bool(save or sink))
        failed |= status != "completed"
        if reply and save:
            save.mkdir(parents=True, exist_ok=True)
            (save / f"{number:02d}-{path.stem}-reply.wav").write_bytes(reply)
        if reply and sink and not args.stream:
            reply_audio = decode(reply, target_rate=None)
            samples, rate = reply_audio.samples, reply_audio.rate
            sink.play(to_pcm16(samples), rate)
        if sink:
            sink.drain()
    return track_id, failed


def whole_turn(
    client: OmniServeClient, turn: dict[str, Any], view: TurnView, console: Console, want_audio: bool
) -> tuple[str, int, str, bytes | None]:
    """POST /v1/conversations; the reply's WAV comes inline when it is to be saved or played."""
    started, http_status = time.perf_counter(), 200
    try:
        with console.status("waiting for the reply…"):
            body = client.converse(**turn, response_audio="base64" if want_audio else "url")
    except OmniServeError as exc:
        if exc.status not in TURN_FAILURES or "track_id" not in exc.body:
            raise
        body, http_status = exc.body, exc.status  # the turn's answer all the same, with what it got to
    view.outcome(body, time.perf_counter() - started)
    if http_status != 200:
        view.error(f"{body.get('detail')} (HTTP {http_status})")
    reply = body.get("reply_audio") or {}
    wav = base64.b64decode(reply["base64"]) if "base64" in reply else None
    return body["track_id"], body["turn"], body["status"], wav


def streamed_turn(
    client: OmniServeClient, turn: dict[str, Any], view: TurnView, console: Console, sink: AudioSink | None
) -> tuple[str, int, str, bytes | None]:
    """POST /v1/conversations/stream: frames shown as they arrive, reply audio played as it comes."""
    waiting = console.status("waiting for the reply…")
    waiting.start()
    pcm, rate, end = [], None, None
    try:
        for frame in client.converse_stream(**turn):
            waiting.stop()
            if isinstance(frame, TTSAudioFrame):
                pcm.append(frame.audio)
                rate = frame.sample_rate
                if sink:
                    sink.play(frame.audio, frame.sample_rate)
                continue
            view.show(frame)
            if isinstance(frame, EndFrame):
                end = frame
    finally:
        waiting.stop()
    if end is None:
        raise ConnectionError("the stream ended before the turn did")
    wav = encode_wav(from_pcm16(b"".join(pcm)), rate) if pcm else None
    return end.track_id, end.turn, end.status, wav


def trace(args: argparse.Namespace, client: OmniServeClient, console: Console) -> int:
    for table in track_tables(client.track(args.track_id)):
        console.print(table)
    return 0


def clusters(args: argparse.Namespace, client: OmniServeClient, console: Console) -> int:
    console.print(clusters_table(client.clusters()))
    return 0


def cluster_of(args: argparse.Namespace) -> str | None:
    """The cluster to start a track on; none when continuing a track, unless named."""
    return args.cluster or (None if args.track_id else DEFAULT_CLUSTER)


def device(value: str) -> str | int:
    """sounddevice takes a device's number or part of its name."""
    return int(value) if value.isdigit() else value


def server_options(parser: argparse.ArgumentParser, with_defaults: bool) -> argparse.ArgumentParser:
    """--url and --api-key, before or after the command; only the top level has defaults, so a
    command's own (SUPPRESS) cannot overwrite what was given before it."""
    unset = argparse.SUPPRESS
    parser.add_argument(
        "--url",
        default=os.environ.get("OMNISERVE_URL", DEFAULT_URL) if with_defaults else unset,
        help=f"server URL (env OMNISERVE_URL, default {DEFAULT_URL})",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("OMNISERVE_API_KEY") if with_defaults else unset,
        help="sent as 'Authorization: Bearer KEY' (env OMNISERVE_API_KEY)",
    )
    return parser


def parser() -> argparse.ArgumentParser:
    server = server_options(argparse.ArgumentParser(add_help=False), with_defaults=False)

    track = argparse.ArgumentParser(add_help=False)
    track.add_argument(
        "--track-cluster",
        "--track_cluster",
        dest="cluster",
        help=f"cluster to start a conversation with (default {DEFAULT_CLUSTER}); see 'clusters'",
    )
    track.add_argument("--track-id", "--track_id", help="continue this track instead of starting one")

    main_parser = server_options(
        argparse.ArgumentParser(prog="omni-client", description="Talk to an OmniServe server."), with_defaults=True
    )
    commands = main_parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    live = commands.add_parser(
        "talk",
        parents=[server, track],
        help="a live conversation over the WebSocket",
        description="Speak with a cluster: the server hears where you stop and answers "
        "aloud; speak over the answer to interrupt it.",
    )
    live.add_argument(
        "--input",
        nargs="+",
        action="extend",
        default=[],
        metavar="FILE",
        help="speak these recordings instead of using the microphone: each at real-time pace, "
        "the next once the reply to the last has played",
    )
    live.add_argument("--output", metavar="WAV", help="write the reply audio to this file instead of playing it")
    live.add_argument(
        "--barge-in",
        type=float,
        metavar="SECONDS",
        help="with several --input files: start each next one this long into the reply, interrupting it",
    )
    live.add_argument(
        "--camera",
        nargs="?",
        const="0",
        metavar="DEVICE",
        help="show webcam frames (device number, default 0, or a video file) with each utterance",
    )
    live.add_argument("--fps", type=float, default=1.0, help="camera frames sampled per second (default 1)")
    live.add_argument("--silence-ms", type=int, help="quiet that ends an utterance (server default 500)")
    live.add_argument("--no-interruptions", action="store_true", help="let replies finish even if you speak")
    live.add_argument("--input-device", type=device, help="microphone (sounddevice name or number)")
    live.add_argument("--output-device", type=device, help="speaker (sounddevice name or number)")
    live.add_argument(
        "--timeout", type=float, default=120.0, help="give up when a reply stalls this many seconds (default 120)"
    )
    live.set_defaults(run=talk)

    post = commands.add_parser(
        "send",
        parents=[server, track],
        help="send recordings, one turn each",
        description="Send audio files (anything soundfile reads), one turn each, on one track.",
    )
    post.add_argument("files", nargs="+", metavar="FILE")
    post.add_argument("--image", action="append", default=[], metavar="FILE", help="an image shown with every turn")
    post.add_argument("--video", metavar="FILE", help="frames of this video shown with every turn")
    post.add_argument("--fps", type=float, default=1.0, help="video frames per second of video (default 1)")
    post.add_argument("--max-frames", type=int, default=8, help="at most this many video frames (default 8)")
    post.add_argument("--stream", action="store_true", help="stream each turn's frames as they happen")
    post.add_argument("--save", metavar="DIR", help="save each reply's audio here")
    post.add_argument("--play", action="store_true", help="play each reply")
    post.add_argument("--output-device", type=device, help="speaker for --play (sounddevice name or number)")
    post.set_defaults(run=send)

    show = commands.add_parser("trace", parents=[server], help="a track's tasks and timings")
    show.add_argument("track_id", metavar="TRACK_ID")
    show.set_defaults(run=trace)

    listing = commands.add_parser("clusters", parents=[server], help="the clusters and whether they run here")
    listing.set_defaults(run=clusters)
    return main_parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    console, errors = Console(), Console(stderr=True)

    def fail(message: str, code: int) -> int:
        errors.print(Text(f"error: {message}", style="bold red"), soft_wrap=True)
        return code

    try:
        with OmniServeClient(args.url, api_key=args.api_key) as client:
            return args.run(args, client, console)
    except ServerUnreachable as exc:
        return fail(str(exc), EXIT_UNREACHABLE)
    except OmniServeError as exc:
        return fail(f"{exc.detail} (HTTP {exc.status})", EXIT_REFUSED)
    except (InputError, AudioDeviceError, CameraError) as exc:
        return fail(str(exc), EXIT_BAD_INPUT)
    except (ConnectionError, TimeoutError) as exc:
        return fail(str(exc), EXIT_REFUSED)
    except KeyboardInterrupt:
        return EXIT_CTRL_C


if __name__ == "__main__":
    sys.exit(main())
