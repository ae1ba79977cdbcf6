# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test install install-test clean figures zoo zou-ch3 zoo-gan gan-directions mesh-pictures haas-nrsfm haas-tensor zou-ch3-mesh z1z2-animation zou-ch4 cvqvae zou-ch5 zou-ch6

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first and pinned: pip takes the local CPU wheel, so nothing pulls CUDA packages.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: install
	$(BIN)/mien demo --out out/demo

test: install-test
	$(BIN)/python -m pytest -n 2 tests

clean:
	rm -rf $(VENV) out build src/*.egg-info

# The shipped zoo (src/mien/zoo/weights): train every recipe of src/mien/configs/zoo, score it, publish it
# (float16 weights + recipe + metrics). Hours on a 2-core CPU; `--accelerator gpu` where there is one.
RUNS ?= runs
ZOO_METRICS ?= --n 1000
zoo: install
	for m in vae tcvae arvae vqvae klae ldm; do \
	  $(BIN)/mien train src/mien/configs/zoo/$$m.yaml --out $(RUNS)/zoo/$$m --no-progress || exit 1; done
	for m in vae tcvae arvae; do \
	  $(BIN)/mien eval ckpt $(RUNS)/zoo/$$m $(ZOO_METRICS) --out $(RUNS)/zoo/$$m/eval.json && \
	  $(BIN)/mien zoo add $(RUNS)/zoo/$$m --name $$m --recipe zoo/$$m --metrics $(RUNS)/zoo/$$m/eval.json || exit 1; done
	for m in vqvae ldm; do \
	  $(BIN)/mien eval ckpt $(RUNS)/zoo/$$m --metrics psnr,ssim,lpips,csim,expr_acc $(ZOO_METRICS) --out $(RUNS)/zoo/$$m/eval.json && \
	  $(BIN)/mien zoo add $(RUNS)/zoo/$$m --name $$m --recipe zoo/$$m --metrics $(RUNS)/zoo/$$m/eval.json || exit 1; done

# The pictures under docs/ from a demo run (the zoo's models): `make demo` first.
figures: demo
	cp out/demo/vae/traversal.png docs/vae_traversal.png
	cp out/demo/tcvae/traversal.png docs/tcvae_traversal.png
	cp out/demo/arvae/traversal.png docs/arvae_traversal.png
	cp out/demo/vae/reconstructions.png docs/vae_reconstructions.png
	cp out/demo/diffusion/samples.png docs/ldm_samples.png
	cp out/demo/edits/edits.png docs/ldm_edits.png
	for f in samples truncation style_mixing direction_interfacegan direction_ganspace direction_sefa inversions; do \
	  cp out/demo/gan/$$f.png docs/gan_$$f.png || exit 1; done

# The mesh world's pictures under docs/ (seconds).
mesh-pictures: install
	$(BIN)/mien data show meshes --out docs/mesh_world.png
	$(BIN)/mien data show mesh_sequences --n 4 --out docs/mesh_sequence.gif

# Zou ch. 3's tables at the small preset (docs/zou-ch3): four runs and their evaluation, 3 to 4 hours on a 2-core CPU.
ZOU ?= out/zou-ch3
zou-ch3: install
	$(BIN)/mien reproduce zou-ch3 --preset small --out $(ZOU) --no-progress
	for d in $(ZOU)/animations/*/; do mkdir -p docs/zou-ch3/animations/$$(basename $$d) && \
	  cp $$d/trajectories.png $$d/sequence_000.gif docs/zou-ch3/animations/$$(basename $$d)/ || exit 1; done
	cp $(ZOU)/zou-ch3.md docs/zou-ch3/

# Zou Tab. 3.5 (docs/zou-ch3-mesh): Z2 and its Linear, CoMA and S2D baselines on two splits of the mesh world
# (24 subjects x 12 motions), eight runs of 2,000 steps at the small preset, about 25 min on a busy 2-core CPU,
# plus closed-form ridge references; finished runs are reused.
ZOUMESH ?= out/zou-ch3-mesh
zou-ch3-mesh: install
	$(BIN)/mien reproduce zou-ch3-mesh --preset small --out $(ZOUMESH) --no-progress
	mkdir -p docs/zou-ch3-mesh/heatmaps && cp $(ZOUMESH)/heatmaps/*.png docs/zou-ch3-mesh/heatmaps/ && \
	  cp $(ZOUMESH)/zou-ch3-mesh.md $(ZOUMESH)/results.json docs/zou-ch3-mesh/

# Z1 + Z2 (docs/zou-ch3-mesh/z1z2): expr4d/small's happy sequences from the landmarks of an unseen subject's
# neutral mesh (Alg. 4, N2E), decoded by zou-ch3-mesh's Z2 run of the expression split into mesh animations
# (GIF + .ply frames); trains expr4d/small first (about 40 min on one core), `make zou-ch3-mesh` before.
Z1 ?= out/expr4d-small
z1z2-animation: install
	$(BIN)/mien train expr4d/small --out $(Z1) --no-progress $$(test -f $(Z1)/state/last.ckpt && echo --resume)
	$(BIN)/mien data synth --out $(ZOUMESH)/unseen --meshes --subjects 1 --motions 1 --frames 4 --seed 7
	$(BIN)/mien expr4d sample $(Z1) --mesh $(ZOUMESH)/runs/expression-proposed \
	  --neutral-mesh $(ZOUMESH)/unseen/subject000/happy/happy.000000.ply --label happy --direction N2E --out $(ZOUMESH)/z1z2
	mkdir -p docs/zou-ch3-mesh/z1z2 && cp $(ZOUMESH)/z1z2/trajectories.png $(ZOUMESH)/z1z2/sequence_000.gif docs/zou-ch3-mesh/z1z2/ && \
	  cp $(ZOUMESH)/z1z2/meshes/sequence_000.gif docs/zou-ch3-mesh/z1z2/mesh_sequence_000.gif

# Zou ch. 4 (docs/zou-ch4): Tab. 4.1, Fig. 4.6 and the saliency maps of the DVAE, its sigma-VAE baseline and
# the classifiers C and C_recon, 5-fold stratified CV with an inner 2 x 2 grid, alpha 1, 2 x sqrt(v) 1.6, 1.9, at
# the small preset (12 runs a fold, 13 in the first; 1 to 1.5 h on one core, ZOU4_JOBS folds at a time;
# finished runs are reused).
# ZOU4_ARGS adds flags and overrides, e.g. a quick check: ZOU4_ARGS='--folds 2 --alphas 1 --sqrt-vs 1.9
# model.K=3 model.filters=[8,8,8,16] model.hidden=128 train.max_steps=750 train.lr=2.0e-3'.
ZOU4 ?= out/zou-ch4
ZOU4_ARGS ?=
ZOU4_JOBS ?= 2
zou-ch4: install
	OMP_NUM_THREADS=1 $(BIN)/mien reproduce zou-ch4 --preset small --out $(ZOU4) --no-progress --jobs $(ZOU4_JOBS) $(ZOU4_ARGS)
	mkdir -p docs/zou-ch4 && cp $(ZOU4)/zou-ch4.md $(ZOU4)/results.json $(ZOU4)/fig4_6.png $(ZOU4)/saliency.png docs/zou-ch4/

# The zoo GAN (zoo/stylegan, the stylegan/small preset), scored and published. About 1 h on a 2-core
# CPU without other load; the run resumes where it stopped.
zoo-gan: install
	$(BIN)/mien train src/mien/configs/zoo/stylegan.yaml --out $(RUNS)/zoo/stylegan --no-progress \
	  $$( [ -f $(RUNS)/zoo/stylegan/state/last.ckpt ] && echo --resume )
	$(BIN)/mien eval ckpt $(RUNS)/zoo/stylegan --metrics fid,kid,pr,ppl $(ZOO_METRICS) --out $(RUNS)/zoo/stylegan/eval.json
	$(BIN)/mien zoo add $(RUNS)/zoo/stylegan --name stylegan --recipe zoo/stylegan --metrics $(RUNS)/zoo/stylegan/eval.json

# Issue 15's direction table on the zoo GAN (docs/gan-directions): `make zoo-gan` first, or the shipped zoo.
GAND ?= out/gan-directions
gan-directions: install
	$(BIN)/mien reproduce gan-directions --preset small --out $(GAND) --no-progress
	mkdir -p docs/gan-directions && cp $(GAND)/gan-directions.md docs/gan-directions/ && \
	  cp $(GAND)/grids/*.png docs/gan-directions/ 2>/dev/null || cp $(GAND)/*.png docs/gan-directions/

# Issue 16 H2: Haas P-III Table 1, NRSfM rotations against the world, NRSfM yaw vs InterFaceGAN/GANSpace
# (docs/haas-nrsfm) on the shipped zoo GAN; one thread, 8 minutes on the shared 2-core machine.
HNRSFM ?= out/haas-nrsfm
haas-nrsfm: install
	OMP_NUM_THREADS=1 $(BIN)/mien reproduce haas-nrsfm --preset small --out $(HNRSFM)
	mkdir -p docs/haas-nrsfm && cp -r $(HNRSFM)/haas-nrsfm.md $(HNRSFM)/results.json $(HNRSFM)/grids docs/haas-nrsfm/

# Haas Papers I-II's tables (issue 16, H1) on the zoo GAN (docs/haas-tensor): a 12-person world grid
# inverted into W+ (cached in $(HAAST)/cache), about 10 min on a quiet 2-core CPU.
HAAST ?= out/haas-tensor
haas-tensor: install
	$(BIN)/mien reproduce haas-tensor --preset small --out $(HAAST) --no-progress
	mkdir -p docs/haas-tensor/grids && cp $(HAAST)/haas-tensor.md $(HAAST)/results.json docs/haas-tensor/ && \
	  cp $(HAAST)/grids/*.png docs/haas-tensor/grids/

# Zou Tab. 6.1's six CVQVAE variants at the small preset (configs/cvqvae/variant_*.yaml): D first, since E
# and F start from its C and tokens (their model.pretrained), then each scored as docs/cvqvae/README.md is
# (`mien eval ckpt --metrics swap,psnr` on 400 unseen faces, a `mien swap` grid). About 1 h a variant on a
# 2-core CPU; CVQ_STEPS="train.max_steps=1000 model.freeze_steps=300" gives the README's 1000-step budget.
CVQ ?= out/cvqvae
CVQ_STEPS ?=
cvqvae: install
	for v in d a b c e f; do \
	  $(BIN)/mien train src/mien/configs/cvqvae/variant_$$v.yaml --out $(CVQ)/variant_$$v --no-progress $(CVQ_STEPS) \
	    $$( case $$v in e|f) echo model.pretrained=$(CVQ)/variant_d;; esac ) \
	    $$( [ -f $(CVQ)/variant_$$v/state/last.ckpt ] && echo --resume ) || exit 1; \
	  $(BIN)/mien eval ckpt $(CVQ)/variant_$$v --metrics swap,psnr --n 400 --out $(CVQ)/variant_$$v/swap.json && \
	  $(BIN)/mien swap $(CVQ)/variant_$$v --a 0 --b 1 --out $(CVQ)/variant_$$v/swap_0_1.png || exit 1; done
# Zou ch. 5's Tab. 5.1 and ch. 6's Tab. 6.1, 6.2, 6.4-6.7 at the small preset (docs/zou-ch5, docs/zou-ch6):
# every row whose preset is shipped, trained into one runs folder that both share, scored on 1,000 unseen
# faces. At 5,000 steps a row is about 19 min of one core (0.23 s a step), and ZOU_JOBS rows train at a time
# (7 rows for ch. 5, 18 more for ch. 6, the sweep's 8 at 40 % of the steps: about 1 h and 2.5 h with 2 jobs
# on 2 cores);
# ZOU_STEPS=train.max_steps=300 gives short runs.
ZOUL ?= out/zou-labels
# the two-step CVQVAE (Tab. 6.1's E) whose c zou-ch6 scales (lambda c) and interpolates (§6.4), on world
# faces 0 and 12 of world seed 12345, the CLI's default (both with glasses, lens tint 0.59 and 0.99)
ZOUE ?= $(ZOUL)/runs/cvqvae_variant_e_model_pretrained_cvqvae_variant_d
ZOU_STEPS ?=
ZOU_JOBS ?= 2
zou-ch5: install
	OMP_NUM_THREADS=1 $(BIN)/mien reproduce zou-ch5 --preset small --out $(ZOUL) --no-progress --jobs $(ZOU_JOBS) $(ZOU_STEPS)
	mkdir -p docs/zou-ch5/grids && cp $(ZOUL)/zou-ch5.md docs/zou-ch5/ && \
	  for r in $$(grep -o 'grids/[a-z0-9_]*\.png' $(ZOUL)/zou-ch5.md); do cp $(ZOUL)/$$r docs/zou-ch5/grids/ || exit 1; done
zou-ch6: install
	OMP_NUM_THREADS=1 $(BIN)/mien reproduce zou-ch6 --preset small --out $(ZOUL) --no-progress --jobs $(ZOU_JOBS) $(ZOU_STEPS)
	mkdir -p docs/zou-ch6/grids && cp $(ZOUL)/zou-ch6.md docs/zou-ch6/ && \
	  for r in $$(grep -o 'grids/[a-z0-9_]*\.png' $(ZOUL)/zou-ch6.md); do cp $(ZOUL)/$$r docs/zou-ch6/grids/ || exit 1; done
	mkdir -p docs/zou-ch6/edits && for i in 0 12; do \
	  $(BIN)/mien traverse $(ZOUE) --feature c --magnitude 0,2 --index $$i --out docs/zou-ch6/edits/magnitude_$$i.png || exit 1; done && \
	  $(BIN)/mien interpolate $(ZOUE) --feature c --a 0 --b 12 --steps 9 --out docs/zou-ch6/edits/interpolate_0_12.png
