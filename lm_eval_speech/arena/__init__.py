"""S2S-Arena: battles between speech-out model runs, judged and rated."""
