"""The media engine: per-leg RTP state, paced playout, DTMF, bridging, recording, the call API."""
