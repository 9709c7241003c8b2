// AudioWorklet: hands each block of microphone samples to the page, which sends them on.
class Microphone extends AudioWorkletProcessor {
  process(inputs) {
    const channel = inputs[0][0];
    if (channel) this.port.postMessage(channel.slice(0));
    return true;
  }
}
registerProcessor("microphone", Microphone);
