// The talk page: microphone -> PCM16 at 16 kHz over the live WebSocket; reply frames -> text and audio.
// What played is counted on window.omniserve so that a test (or a curious person) can read it.
const RATE = 16000;
const $ = (id) => document.getElementById(id);
const state = (window.omniserve = { playedSamples: 0, turns: 0, ws: null });
let mic = null;
let speaker = null;
let playing = [];
let playAt = 0;

function pcm16(floats) {
  const out = new Int16Array(floats.length);
  for (let i = 0; i < floats.length; i++) out[i] = Math.max(-1, Math.min(1, floats[i])) * 32767;
  return out.buffer;
}

let header = null; // a frame whose audio is the next, binary, message

function play(frame) {
  const samples = new Int16Array(frame.audio, 0, frame.audio.byteLength >> 1);
  const buffer = speaker.createBuffer(1, samples.length, frame.sample_rate);
  const channel = buffer.getChannelData(0);
  for (let i = 0; i < samples.length; i++) channel[i] = samples[i] / 32767;
  const source = speaker.createBufferSource();
  source.buffer = buffer;
  source.connect(speaker.destination);
  playAt = Math.max(playAt, speaker.currentTime);
  source.start(playAt);
  playAt += buffer.duration;
  playing.push(source);
  source.onended = () => {
    playing = playing.filter((s) => s !== source);
    state.playedSamples += samples.length;
    document.body.dataset.playedSamples = state.playedSamples;
  };
}

function silence() {
  for (const source of playing) source.stop();
  playing = [];
  playAt = 0;
}

function received(frame) {
  switch (frame.type) {
    case "StartFrame":
      if (frame.track_id) {
        $("trace").href = `/tracks/${frame.track_id}`;
        $("trace").textContent = frame.track_id;
      }
      break;
    case "TranscriptionFrame":
      $("transcript").textContent = frame.text;
      $("reply").textContent = "";
      break;
    case "LLMTextFrame":
      $("reply").textContent += frame.text;
      break;
    case "TTSAudioFrame":
      play(frame);
      break;
    case "StartInterruptionFrame":
      silence();
      break;
    case "MetricsFrame":
      if (frame.stage == null && frame.metrics.time_to_first_audio_s != null) {
        $("latency").textContent = `${frame.metrics.time_to_first_audio_s.toFixed(2)} s after you stopped`;
      }
      break;
    case "EndFrame":
      state.turns += 1;
      break;
    case "ErrorFrame":
      $("status").textContent = `Error: ${frame.error}`;
      break;
  }
}

async function start(event) {
  event.preventDefault();
  $("start").disabled = true;
  $("status").textContent = "Asking for the microphone…";
  speaker = new AudioContext();
  mic = new AudioContext({ sampleRate: RATE });
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true },
  });
  await mic.audioWorklet.addModule("/static/mic.js");
  const node = new AudioWorkletNode(mic, "microphone");
  mic.createMediaStreamSource(stream).connect(node);
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = (state.ws = new WebSocket(`${scheme}://${location.host}/v1/conversations/ws`));
  ws.onopen = () => {
    ws.send(JSON.stringify({ type: "StartFrame", cluster: $("cluster").value }));
    $("status").textContent = "Listening.";
    $("stop").disabled = false;
  };
  ws.binaryType = "arraybuffer";
  ws.onmessage = (message) => {
    if (typeof message.data !== "string") {
      if (header) received({ ...header, [header.binary]: message.data });
      header = null;
      return;
    }
    const frame = JSON.parse(message.data);
    if (frame.binary) header = frame;
    else received(frame);
  };
  ws.onclose = (closed) => {
    $("status").textContent = closed.reason ? `Closed: ${closed.reason}` : "Microphone off.";
    stop();
  };
  node.port.onmessage = (message) => {
    if (ws.readyState === WebSocket.OPEN) ws.send(pcm16(message.data));
  };
}

function stop() {
  if (state.ws && state.ws.readyState <= WebSocket.OPEN) state.ws.close();
  if (mic) mic.close();
  mic = null;
  $("start").disabled = false;
  $("stop").disabled = true;
}

$("talk").addEventListener("submit", (event) => start(event).catch((error) => {
  $("status").textContent = `Error: ${error.message}`;
  stop();
}));
$("stop").addEventListener("click", stop);
