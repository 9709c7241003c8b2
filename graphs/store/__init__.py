"""Where tracks, task records, audio and annotations are kept."""
