"""The wire protocol server and clients share: frames and their JSON form, audio as it travels
(PCM16, WAV), track ids and the meaning of a latency profile.

A leaf: it imports no Ray, torch or model code, so a client installs with numpy, soundfile and soxr.
"""
