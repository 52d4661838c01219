# pillsnap — `make demo` and `make test` are the two commands a fresh clone needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.pillsnap-installed

.PHONY: install demo bench-cls bench-det bench-pipeline bench-wild bench-phone bench-phone-gpu det-start bench-real bench-retrieval bench-prepare bench-report rehearse gpu-check gpu-wheels install-gpu bench-cpu bench-int8 bench-ocr soak test test-fast browser lab docs readme house clean-work

# Reinstalls only when pyproject.toml changes (or the venv is missing). `make install GPU=1` puts ONNX Runtime's CUDA build
# (onnxruntime-gpu) in place of the CPU one and remembers it ($(VENV)/.pillsnap-gpu): every later `make install` keeps it,
# even one that reinstalls; `make install GPU=0` goes back. Not a pip extra: both wheels ship the module `onnxruntime`, and
# installed side by side whichever came last wins file by file, so the swap is one package for the other.
GPU_MARK := $(VENV)/.pillsnap-gpu
GPU ?= $(if $(wildcard $(GPU_MARK)),1,0)
install: $(STAMP)
ifeq ($(GPU),1)
	@touch $(GPU_MARK)
	@$(BIN)/python -m pip show --quiet onnxruntime-gpu >/dev/null 2>&1 && ! $(BIN)/python -m pip show --quiet onnxruntime >/dev/null 2>&1 \
	  || { echo "ONNX Runtime for the GPU (onnxruntime-gpu) in place of the CPU build (make install GPU=0 goes back)"; \
	       $(BIN)/python -m pip uninstall --quiet -y onnxruntime onnxruntime-gpu && \
	       $(BIN)/python -m pip install --quiet 'onnxruntime-gpu>=1.20'; }
else
	@rm -f $(GPU_MARK)
	@! $(BIN)/python -m pip show --quiet onnxruntime-gpu >/dev/null 2>&1 \
	  || { echo "ONNX Runtime's CPU build in place of onnxruntime-gpu (GPU=0)"; \
	       $(BIN)/python -m pip uninstall --quiet -y onnxruntime onnxruntime-gpu && \
	       $(BIN)/python -m pip install --quiet 'onnxruntime>=1.20'; }
endif
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (pillsnap)" >/dev/null
	@git rev-parse --git-dir >/dev/null 2>&1 && $(BIN)/nbdev-install-hooks >/dev/null 2>&1 || true
	@touch $@
	@echo "pillsnap installed in $(VENV)"

# REFERENCE=../shared/realdata/c3pi-reference: other real pills that teach the demo's classifier and are never answered
# (nbs/08a_run.demo: --reference; 1,000 of its products teach, the rest are kept apart to judge "unknown" by). Not the
# default: real-photo trials gain, the enrolment path and the demo's time lose (nbs/95_log.ipynb, 2026-12-01).
REFERENCE ?=
# DETECTOR_PHOTOS: real photos with every pill boxed (a Roboflow YOLO export) whose training photos teach the demo's detector
# alone, split by source photo (nbs/08a_run.demo: --detector-photos); pushin-pill's when ../shared/realdata holds it.
# DETECTOR_PHOTOS= (empty): rendered scenes only.
DETECTOR_PHOTOS ?= $(wildcard ../shared/realdata/pushin-pill)

demo: install
	$(BIN)/pillsnap demo $(if $(REFERENCE),--reference $(REFERENCE)) $(if $(DETECTOR_PHOTOS),--detector-photos $(DETECTOR_PHOTOS))

# The CPU accuracy benchmark of the classifier (nbs/90_benchmarks.ipynb): 50 drugs at 488x640, resnet10t at 128 px.
bench-cls: install
	$(BIN)/pillsnap demo --preset bench --classifier-only

# The detector's benchmark (nbs/90_benchmarks.ipynb): 480 synthetic combination photos at 244x320, yolo11n at 320 px, 60 epochs.
bench-det: install
	$(BIN)/pillsnap demo --preset bench-det --detector-only

# Single mode as users get it (nbs/90_benchmarks.ipynb): the bench experiment's own detector, then both stages on its validation photos.
bench-pipeline: bench-cls
	$(BIN)/pillsnap train-det --exp work/exp/bench
	$(BIN)/pillsnap evaluate --exp work/exp/bench --what pipeline

# Real photos, never seen in training (nbs/90_benchmarks.ipynb): a detector trained on wild synthetic scenes only, then judged on
# REAL (a YOLO export; by default the pushin-pill phone photos beside this checkout), its val + test photos.
REAL ?= ../shared/realdata/pushin-pill
REAL_TREE = work/realdata/$(notdir $(REAL))
bench-wild: install
	$(BIN)/pillsnap demo --preset wild-det --detector-only
	$(BIN)/python tools/realdata_tree.py $(REAL) $(REAL_TREE)
	$(BIN)/pillsnap evaluate --exp work/exp/wild-det --what detector --data $(REAL_TREE)/data.yaml --split test

# The default recipe (studio photos, the release's pills pasted on phone-like scenes, made-up pills on them) at bench-det's data
# size, judged on REAL's val + test photos, never trained on (nbs/90_benchmarks.ipynb: The default recipe on phone photos).
bench-phone: install
	$(BIN)/pillsnap demo --preset phone-det --detector-only
	$(BIN)/python tools/realdata_tree.py $(REAL) $(REAL_TREE)
	$(BIN)/pillsnap evaluate --exp work/exp/phone-det --what detector --data $(REAL_TREE)/data.yaml --split test

# The same data with the detector config.yaml ships (YOLO11m at 640, 30 epochs): for a GPU (one H100: 3.7 min; nbs/90_benchmarks.ipynb).
bench-phone-gpu: install
	$(BIN)/pillsnap demo --preset phone-det-gpu --detector-only
	$(BIN)/python tools/realdata_tree.py $(REAL) $(REAL_TREE)
	for split in test val; do $(BIN)/pillsnap evaluate --exp work/exp/phone-det-gpu --what detector --data $(REAL_TREE)/data.yaml --split $$split || exit 1; done

# The detector's pill start (detector.start: auto, nbs/04b_train.detector): the preset DET_PRESET's recipe on synthetic photos
# only, in two rounds — from random weights (the preset's own run: make bench-phone's for phone-det), then again from the first
# round's weights — stored in half precision in the package as <architecture>-pill.safetensors; record the printed SHA-256 in
# PILL_STARTS. phone-det (YOLO11n at 480, the start that ships): about 3 hours on 2 cores (two 75-minute trainings);
# DET_PRESET=phone-det-gpu (YOLO11m at 640, the detector config.yaml ships): two 3.7-minute trainings on one H100.
DET_PRESET ?= phone-det
det-start: install
	$(BIN)/pillsnap demo --preset $(DET_PRESET) --detector-only
	$(BIN)/python tools/det_start.py work/exp/$(DET_PRESET) work/exp/$(DET_PRESET)/start-round1.safetensors
	$(BIN)/pillsnap demo --preset $(DET_PRESET) --detector-only paths.exp_dir=work/exp/$(DET_PRESET)-start \
	  detector.weights_path=work/exp/$(DET_PRESET)/start-round1.safetensors
	$(BIN)/python tools/det_start.py work/exp/$(DET_PRESET)-start pillsnap/starts/

# The wild-scene detector above fine-tuned on REAL's own training photos at 480 px for 40 epochs; the size it detects at is the one the
# holdout photos (val) score best at, 640 px (the photos' own) when measured; then judged on the val + test photos of the release at that
# size and at its training size (nbs/90_benchmarks.ipynb). Run make bench-wild first.
bench-real: install
	$(BIN)/pillsnap train-det --exp work/exp/real-ft --data $(REAL_TREE)/data.yaml detector.model=yolo11n detector.img_size=480 \
	  detector.epochs=40 detector.workers=2 detector.weights_path=work/exp/wild-det/detector/detector.safetensors
	for size in 480 544 640; do $(BIN)/pillsnap evaluate --exp work/exp/real-ft --what detector --data $(REAL_TREE)/data.yaml --split val detector.img_size=$$size; done
	$(BIN)/pillsnap evaluate --exp work/exp/real-ft --what detector --data $(REAL_TREE)/data.yaml --split test detector.img_size=640
	$(BIN)/pillsnap evaluate --exp work/exp/real-ft --what detector --data $(REAL_TREE)/data.yaml --split test

# Retrieval (nbs/90_benchmarks.ipynb): the bench recipe with 5 drugs held out of training; reports/retrieval.json holds the open-set AUROC,
# the false-accept rate and enrolment top-1 of the held-out drugs — from random weights (resnet10t, 128 px: the experiment bench-ocr and
# tools/bench_int8.py read), then from the offline ImageNet start (EfficientNet-Lite0, 160 px, 20 epochs) with its gallery whitened;
# then enrolment on the real photos from the offline start.
bench-retrieval: install
	$(BIN)/pillsnap demo --preset bench --classifier-only split.holdout_drugs=5 paths.exp_dir=work/exp/bench-retrieval data.root=work/synth/bench-retrieval
	$(BIN)/pillsnap demo --preset bench --classifier-only split.holdout_drugs=5 paths.exp_dir=work/exp/bench-retr-lite0 data.root=work/synth/bench-retrieval \
	  classifier.pretrained=lite0 classifier.model=tf_efficientnet_lite0 classifier.img_size=160 classifier.mean=0.5,0.5,0.5 classifier.std=0.5,0.5,0.5 \
	  train.epochs=20 train.lr=0.001
	$(BIN)/pillsnap gallery --exp work/exp/bench-retr-lite0 --rebuild retrieval.whiten=true
	$(BIN)/pillsnap prepare --exp work/exp/pushin-retr data.root= "data.sources=[{path: $(REAL), name: pushin}]" data.combo_crops=true \
	  classifier.pretrained=lite0 classifier.model=tf_efficientnet_lite0 classifier.img_size=224 classifier.mean=0.5,0.5,0.5 classifier.std=0.5,0.5,0.5
	$(BIN)/pillsnap gallery --exp work/exp/pushin-retr --few-shot --untrained
	$(BIN)/pillsnap gallery --exp work/exp/pushin-retr --few-shot --untrained classifier.pretrained=none

# Reading imprints (pipeline.ocr): top-1 with and without the read on the bench-retrieval experiment's validation pills, the weight tuned on
# one half of its photos and judged on the other, and the reader's time per pill (nbs/90_benchmarks.ipynb).
bench-ocr: install
	$(BIN)/python tools/bench_ocr.py --exp work/exp/bench-retrieval --out work/bench-ocr

# INT8 recipes (calibration method, calibration crops, float ends) on the bench classifier (nbs/90_benchmarks.ipynb: Export); run make bench-cls first.
bench-int8: install
	$(BIN)/python tools/bench_int8.py --exp work/exp/bench --out work/bench-int8

# prepare at fractions of the release's scale on labels-only synthetic releases (nbs/90_benchmarks.ipynb: Data); FRACTIONS=0.01,0.1,1.0 for all.
FRACTIONS ?= 0.01,0.1
bench-prepare: install
	$(BIN)/python tools/bench_prepare.py --fractions $(FRACTIONS) --out work/bench-prepare

# The classifier report at the release's 4,523 drugs on random logits: seconds and peak memory per step (nbs/90_benchmarks.ipynb: Classifier).
bench-report: install
	$(BIN)/python tools/bench_report.py --crops 20000 --classes 4523 --json work/bench-report.json

# Stage 4 rehearsed: all 4,523 drugs through the user's path under a 1,024-file limit, ~2,000 cache files (nbs/90_benchmarks.ipynb: Data).
rehearse: install
	$(BIN)/python tools/rehearse.py --out work/rehearse

# The GPU path in one command (~11 minutes on one H100, estimated; --steps runs some): training img/s eager and compiled, auto batch, the forced
# out-of-memory ladder, YOLO11m training, serving p50/p95 per backend; JSON and the README's rows (nbs/90_benchmarks.ipynb).
gpu-check: install
	$(BIN)/python tools/gpu_check.py --out work/gpu-check

# For a GPU machine without internet whose Python (3.12, x86-64) already holds PyTorch, timm, ONNX, OpenCV and scikit-learn,
# as lent GPU machines here do: the wheels gpu-check imports beyond those, at this venv's versions, into .whl/ (~40 MB;
# polars 1.9, one 33 MB wheel: ultralytics' trainer reads its results with it). There: `pip install --no-index --no-deps
# --target DIR .whl/*.whl`, DIR first on PYTHONPATH, the checkout second (nbs/95_log, 2026-11-30: the list found on one H200).
GPU_WHEELS := beartype defusedxml fastai fastcore fastdownload fastprogress fasttransform httpcore2 httpx2 itsdangerous \
  pillow_heif plum-dispatch python-fasthtml python-multipart sniffio starlette ultralytics ultralytics-thop
gpu-wheels: install
	@mkdir -p .whl && $(BIN)/python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
	  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
	  $$(for p in $(GPU_WHEELS); do echo "$$p==$$($(BIN)/python -m pip show $$p | sed -n 's/^Version: //p')"; done) polars==1.9.0
	@ls .whl

# ONNX Runtime's CUDA (and TensorRT, where installed) provider for `serve --backend onnx` and the export's parity check on a GPU:
# the same as `make install GPU=1` (kept across reinstalls), then the providers it offers.
install-gpu:
	$(MAKE) install GPU=1
	$(BIN)/python -c "import onnxruntime as o; print('ONNX Runtime', o.__version__, 'providers:', ', '.join(o.get_available_providers()))"

# The production architectures (EfficientNetV2-S 384, YOLO11m 640) served on this CPU: p50/p95 per mode and backend (nbs/90_benchmarks.ipynb).
bench-cpu: install
	$(BIN)/python tools/bench_cpu_serving.py --out work/bench-cpu

# The service for 30 minutes of mixed traffic on loopback: 0 errors and flat memory, or exit 1 (EXP=work/exp/demo; nbs/91_operations.ipynb).
EXP ?= work/exp/demo
soak: install
	$(BIN)/python tools/soak.py --exp $(EXP) --minutes 30 --clients 4

# Notebooks (one pytest case each, via nbdev-test), the gates and tests/ — one "N passed, N failed" line. TEST_WORKERS pytest-xdist
# processes share the tests, each test wherever a process is free (so no test may rely on another test's process: pytest 9.2
# dropped the node-id hook pytest-xdist 3.8's `xdist_group` rides on); TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= 2
test: install browser
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist load

# The fast tier: everything but the tests marked slow (training, kill/resume, demo, browser), in TEST_WORKERS processes too.
test-fast: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist load -m "not slow"

# The web page's test drives Debian's Chromium headless (no browser download); installed when missing and apt is usable.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian chromium and chromium-driver for the web page test"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) >/dev/null; \
	  else echo "chromium/chromedriver missing and apt-get not usable: the browser test will be skipped"; fi; }

lab: install
	$(BIN)/jupyter lab nbs

# The docs site, offline, into _docs/ (tools/docs.py): Quarto when it is installed, else smalldocs (pure Python) from the same _quarto.yml.
docs: install
	$(BIN)/python tools/docs.py

# README.md is generated from nbs/index.ipynb (a test fails when it is stale).
readme:
	$(PYTHON) tools/readme.py

# The house's measurements (issue 38): cells over 30 lines, longest functions, long lines, modules that load fastai, README words.
house: install
	$(BIN)/python tools/house.py

clean-work:
	rm -rf work
