# cemp-hfs: every target sets up what it needs. The README's two commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SIZE   ?= small
# torch's OpenMP threads spin while waiting by default, which makes parallel notebook tests crawl on 2 cores
OMP_WAIT_POLICY ?= PASSIVE
export OMP_WAIT_POLICY

.PHONY: setup demo test test-nbs test-py check-sync readme export clean-nbs docs bench bench-mock bench-preprocess bench-inference bench-accuracy clean

# One virtual environment with the package (editable) and its dev extras. torch is installed first and pinned by
# constraints.txt to the local CPU wheel, so that fastai's torchvision requirement cannot pull a CUDA build of torch.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $@

setup: $(STAMP)

## The main job: a small end-to-end run into demo_out/
demo: $(STAMP)
	$(BIN)/cemp-hfs demo --out demo_out

## Every test: the package agrees with the notebooks, notebooks are clean, notebook tests, then pytest.
test: $(STAMP) check-sync test-nbs test-py

check-sync: $(STAMP)
	$(BIN)/nbdev-export
	$(BIN)/nbdev-clean
	$(BIN)/python tools/render_readme.py --check
	$(BIN)/python tools/execute_nbs.py --check
	@if ! git diff --quiet -- cemp_hfs nbs README.md || [ -n "$$(git ls-files --others --exclude-standard -- cemp_hfs nbs)" ]; then \
		echo "Notebooks and package/README disagree, or notebooks are not clean (run make export, make clean-nbs, make readme):"; \
		git status --short -- cemp_hfs nbs README.md; git --no-pager diff --stat -- cemp_hfs nbs README.md; exit 1; fi
	@echo "check-sync: cemp_hfs/, nbs/ and README.md are in sync"

test-nbs: $(STAMP)
	MPLBACKEND=Agg $(BIN)/nbdev-test --n-workers 2 --timing

test-py: $(STAMP)
	MPLBACKEND=Agg $(BIN)/python -m pytest -q

## Developer targets
export: $(STAMP)
	$(BIN)/nbdev-export

clean-nbs: $(STAMP)
	$(BIN)/nbdev-clean

readme: $(STAMP)
	$(BIN)/python tools/render_readme.py

## The notebooks are committed with their outputs and figures (what a repository page shows). After changing a
## notebook's code, the package or the benchmark results: `make outputs` (executes every notebook, ~3 min on 2 CPUs)
## then commit; `make test` fails while saved outputs are stale. `make outputs-check` re-executes and compares the text
## outputs with the saved ones (numbers to a relative 1e-3, elapsed times ignored).
.PHONY: outputs outputs-check
outputs: $(STAMP)
	$(BIN)/nbdev-export
	$(BIN)/python tools/execute_nbs.py $(NBS_TO_RUN)

outputs-check: $(STAMP)
	$(BIN)/python tools/execute_nbs.py --compare $(NBS_TO_RUN)

## The documentation site in _docs/: nbdev-docs where Quarto is installed; otherwise tools/build_docs.py (nbdev's own
## processing, then HTML and Markdown pages with nbconvert's Markdown and Pygments), from the saved outputs (a notebook
## whose outputs are stale is executed first)
docs: $(STAMP)
	@if command -v quarto >/dev/null 2>&1; then $(BIN)/nbdev-docs; \
	else echo "Quarto not found: building _docs/ with tools/build_docs.py"; MPLBACKEND=Agg $(BIN)/python tools/build_docs.py; fi

# Every page of _docs/ opened in headless Chromium: it loads, its images display, its links resolve. Needs Debian's
# chromium and chromium-driver (apt-get install chromium chromium-driver) and selenium (the docs extra)
.PHONY: docs-check
docs-check: docs
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[docs]"
	$(BIN)/python tools/check_docs.py

bench: bench-mock bench-preprocess bench-inference

bench-mock: $(STAMP)
	MPLBACKEND=Agg $(BIN)/python benchmarks/mock_realism.py

# laspec and TheCannon are compared against in the benchmark only: installed without their dependencies, never package deps
bench-preprocess: $(STAMP)
	$(BIN)/python -m pip install -q --no-deps -c constraints.txt laspec thecannon || echo "laspec/thecannon not installed: benchmarks/preprocess.py skips them"
	MPLBACKEND=Agg $(BIN)/python benchmarks/preprocess.py

bench-inference: $(STAMP)
	MPLBACKEND=Agg $(BIN)/python benchmarks/inference.py

# predict per stage, in one process and on a Dask LocalCluster of 1 and 2 workers, with a DR10 projection (~5 min on 2 CPUs)
.PHONY: bench-scale
bench-scale: $(STAMP)
	MPLBACKEND=Agg nice -n 10 $(BIN)/python benchmarks/scale.py

# HFS-Net vs The Cannon, chi-square matching and the Cramer-Rao floor (SIZE=small ~15 min, SIZE=default < 90 min on 2 CPUs);
# resumable: stages are cached in benchmarks/cache/accuracy_$(SIZE)/
bench-accuracy: $(STAMP)
	MPLBACKEND=Agg nice -n 5 $(BIN)/python benchmarks/accuracy.py --size $(SIZE)

# HFS-Net trained on real LAMOST spectra (DR10 with LASP labels) against LASP, The Cannon and the mock-trained demo model;
# false-CEMP rate, DR1 and DR8 repeats (~25 min of CPU on 2 CPUs); resumable: stages are cached in benchmarks/cache/real/
.PHONY: bench-real
bench-real: $(STAMP)
	MPLBACKEND=Agg nice -n 10 $(BIN)/python benchmarks/real.py

# The user's path on real stars: cemp-hfs prepare, train, predict, select on the DR10 spectra with LASP labels, every
# option at its default, then the test split against LASP (~35 min on 2 CPUs: five networks); steps kept in benchmarks/cache/real_cli/
.PHONY: bench-real-cli
bench-real-cli: $(STAMP)
	MPLBACKEND=Agg nice -n 5 $(BIN)/python benchmarks/real_cli.py

# The single network the package ships (hfsnet-small-mock-dr10; the first of the default ensemble below): HFS-Net small on the mock survey and the real DR10 spectra with LASP labels at once,
# calibrated and measured (seeded; ~10 min on 2 CPUs). A plain run writes a candidate (benchmarks/cache/pretrained/,
# numbers in benchmarks/results/pretrained_candidate.md) to compare with the shipped model's benchmarks/results/pretrained.md;
# `make pretrained SHIP=1` replaces the shipped model (cemp_hfs/models/) and its numbers, the model card's source
.PHONY: pretrained
pretrained: $(STAMP)
	MPLBACKEND=Agg nice -n 5 $(BIN)/python benchmarks/pretrained.py $(if $(SHIP),--ship)

# The deep ensemble the package ships beside it and uses by default (hfsnet-small-mock-dr10-x5): the same network trained from seeds 0-4,
# combined by cemp_hfs.train.ensemble_models, calibrated and measured the same way (~30 min more on 2 CPUs; reuses the
# cache of `make pretrained`); numbers in benchmarks/results/pretrained_x5.md, `SHIP=1` copies it to cemp_hfs/models/
.PHONY: pretrained-x5
pretrained-x5: $(STAMP)
	MPLBACKEND=Agg nice -n 5 $(BIN)/python benchmarks/pretrained.py --members 5 --tag x5 $(if $(SHIP),--ship)

# Why the shipped model reads the pseudo-LAMOST benchmark stars too metal-rich: the same star on six real donor continua,
# and regions swapped between the real star and the mock (~2 min on 2 CPUs; writes benchmarks/results/pseudo_diagnostics.md)
.PHONY: bench-pseudo-diagnostics
bench-pseudo-diagnostics: $(STAMP)
	nice -n 10 $(BIN)/python benchmarks/pseudo_diagnostics.py

# Real-star MAE against the number of real training stars (30, 100, 300, all) for HFS-Net small trained real-only,
# mock-only, mock-pretrained then fine-tuned, and co-trained, with the mock carbon skill of each (~20 min of CPU on
# 2 CPUs, 1 torch thread); needs the cached datasets of `make pretrained`; resumable: benchmarks/cache/learning_curve/
.PHONY: bench-learning
bench-learning: $(STAMP)
	MPLBACKEND=Agg OMP_NUM_THREADS=1 nice -n 10 $(BIN)/python benchmarks/learning_curve.py

# How the calibration's bin factors weigh 68% coverage against unit robust width (WIDTH_WEIGHT in cemp_hfs.calibrate),
# chosen on the calibration stars of `make pretrained` alone (2-fold; ~3 min on 2 CPUs); needs its cache
.PHONY: bench-calibration-choice
bench-calibration-choice: $(STAMP)
	nice -n 10 $(BIN)/python benchmarks/calibration_choice.py

# Are the uncertainties calibrated? The single shipped network's *_err and P(CEMP) against unseen mock stars (pulls per S/N bin,
# coverage, reliability diagram, Brier score), real DR10 test stars against LASP and real DR8 repeats (~10 min of CPU on
# 2 CPUs); needs the cached datasets of `make pretrained`; resumable: benchmarks/cache/uncertainty/
.PHONY: bench-uncertainty
bench-uncertainty: $(STAMP)
	MPLBACKEND=Agg nice -n 10 $(BIN)/python benchmarks/uncertainty.py

# The same for the shipped deep ensemble, the default model (after `make pretrained-x5 SHIP=1`): benchmarks/results/uncertainty_x5.*
.PHONY: bench-uncertainty-x5
bench-uncertainty-x5: $(STAMP)
	MPLBACKEND=Agg nice -n 10 $(BIN)/python benchmarks/uncertainty.py --model cemp_hfs/models/hfsnet-small-mock-dr10-x5.pt --tag x5

clean:
	rm -rf $(VENV) demo_out _docs _proc _exec .pytest_cache

# Mutation check, a developer target (not part of `make test`): ~35 small plausible bugs, each put into a notebook's
# export cell in a scratch copy under /tmp, exported and run against the tests that should catch it (1-2 at a time;
# ~30-60 min on 2 shared CPUs); caught or not in benchmarks/results/mutants.md and .json
MUTANT_JOBS ?= 2
.PHONY: mutants
mutants: $(STAMP)
	MPLBACKEND=Agg nice -n 10 $(BIN)/python benchmarks/mutants.py --jobs $(MUTANT_JOBS)
