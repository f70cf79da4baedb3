"""Speech I/O: reading and resampling audio, speech recognition, speech synthesis, and spoken answers."""
