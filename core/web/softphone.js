// The web softphone's media (WebRTC) for the agent desktop. Signalling goes over the agent's /agent
// Socket.IO connection: "softphone_offer" {call_id, sdp, type} → ack {ok: {sdp, type}} or {error}.
// The server (aiortc) does not trickle ICE, so the offer is sent once gathering is complete.
//
//   const phone = new Softphone(socket, {audioElement});
//   await phone.connect(callId);   // microphone → caller, caller → <audio>
//   phone.mute(true); phone.level(); await phone.hangup();
//
// On the /supervisor socket: await phone.connect(callId, {mode: "listen"}), then
// await phone.setMode("whisper" | "barge" | "listen").

const VOICE = {
  echoCancellation: false,
  noiseSuppression: false,
  autoGainControl: false,
};

export class Softphone {
  constructor(socket, { audioElement = null, onState = () => {} } = {}) {
    this.socket = socket;
    this.audioElement = audioElement;
    this.onState = onState;
    this.pc = null;
    this.callId = null;
    this.microphone = null;
    this.analyser = null;
    this.context = null;
    this.mode = null;
  }

  get connected() {
    return this.pc !== null && this.pc.connectionState === "connected";
  }

  async connect(callId, { mode = null } = {}) {
    await this.hangup();
    this.callId = callId;
    // Browsers' voice processing reshapes the signal; the call leg has its own, so take it raw.
    this.microphone = await navigator.mediaDevices.getUserMedia({
      audio: VOICE,
      video: false,
    });
    const pc = new RTCPeerConnection({ iceServers: [] });
    this.pc = pc;
    pc.addEventListener("connectionstatechange", () =>
      this.onState(pc.connectionState),
    );
    for (const track of this.microphone.getAudioTracks())
      pc.addTrack(track, this.microphone);
    pc.addEventListener("track", (event) =>
      this._play(event.streams[0] || new MediaStream([event.track])),
    );
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const offer = {
      call_id: callId,
      sdp: pc.localDescription.sdp,
      type: pc.localDescription.type,
    };
    if (mode) offer.mode = mode;
    const reply = await this.socket
      .timeout(15000)
      .emitWithAck("softphone_offer", offer);
    if (reply.error) {
      await this.hangup();
      const error = new Error(reply.error.detail || reply.error.code);
      error.code = reply.error.code;
      throw error;
    }
    this.mode = reply.ok.mode;
    await pc.setRemoteDescription({ sdp: reply.ok.sdp, type: reply.ok.type });
  }

  async setMode(mode) {
    const reply = await this.socket
      .timeout(5000)
      .emitWithAck("softphone_mode", { call_id: this.callId, mode });
    if (reply.error) {
      const error = new Error(reply.error.detail || reply.error.code);
      error.code = reply.error.code;
      throw error;
    }
    this.mode = reply.ok.mode;
  }

  // Magnitude (dB) of what the other side sends at each frequency asked for.
  spectrum(frequencies) {
    if (!this.analyser) return frequencies.map(() => -Infinity);
    const bins = new Float32Array(this.analyser.frequencyBinCount);
    this.analyser.getFloatFrequencyData(bins);
    const width = this.context.sampleRate / this.analyser.fftSize;
    return frequencies.map((hz) =>
      Math.max(...[-1, 0, 1].map((d) => bins[Math.round(hz / width) + d])),
    );
  }

  mute(on) {
    for (const track of this.microphone ? this.microphone.getAudioTracks() : [])
      track.enabled = !on;
  }

  // RMS (0..1) of what the caller sends right now, from a WebAudio analyser on the remote stream.
  level() {
    if (!this.analyser) return 0;
    const samples = new Float32Array(this.analyser.fftSize);
    this.analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const value of samples) sum += value * value;
    return Math.sqrt(sum / samples.length);
  }

  async hangup() {
    const { pc, callId } = this;
    this.pc = null;
    this.callId = null;
    if (this.microphone)
      this.microphone.getTracks().forEach((track) => track.stop());
    this.microphone = null;
    if (this.context) await this.context.close().catch(() => {});
    this.context = null;
    this.analyser = null;
    if (pc) {
      pc.close();
      if (this.socket.connected && callId)
        this.socket.emit("softphone_hangup", { call_id: callId });
    }
  }

  _play(stream) {
    if (this.audioElement) {
      this.audioElement.srcObject = stream;
      this.audioElement.play().catch(() => {});
    }
    this.context = new AudioContext();
    this.analyser = this.context.createAnalyser();
    this.analyser.fftSize = 2048;
    this.context.createMediaStreamSource(stream).connect(this.analyser);
  }
}

function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const check = () => {
      if (pc.iceGatheringState === "complete") {
        pc.removeEventListener("icegatheringstatechange", check);
        resolve();
      }
    };
    pc.addEventListener("icegatheringstatechange", check);
  });
}
