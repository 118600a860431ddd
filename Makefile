# fskd: the stages chained on files. `make demo` runs the whole pipeline on the embedded MNIST digits;
# `make test` runs the tests. Both create the virtual environment first if it is missing.
PYTHON ?= python3.11
VENV ?= .venv
FSKD := $(VENV)/bin/fskd
RECIPE ?= recipes/digits-demo.yaml
DATA ?= data/digits
DEMO ?= runs/demo
SCALE ?= 4
SEEDS ?= 0
METHODS ?= base fitnet norm-kd f-skd
RESULTS := $(DEMO)/results.csv
# --resume when a checkpoint is there: a finished run returns at once, an interrupted one continues
resume = $(if $(wildcard $(1)/checkpoint.pt),--resume,)

.PHONY: venv demo prepare teachers students evaluate analyze test clean-demo

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e ".[dev]"
	touch $@

prepare: venv $(DATA)/meta.yaml
$(DATA)/meta.yaml:
	$(FSKD) prepare digits --out $(DATA)

teachers: prepare
	@for s in $(SEEDS); do \
	  $(FSKD) train-teacher --recipe $(RECIPE) --data $(DATA) --seed $$s --out $(DEMO)/s$$s/teacher \
	    $$([ -f $(DEMO)/s$$s/teacher/checkpoint.pt ] && echo --resume) || exit 1; \
	done

students: teachers
	@for s in $(SEEDS); do for m in $(METHODS); do \
	  $(FSKD) distill --recipe $(RECIPE) --data $(DATA) --seed $$s --method $$m --scale $(SCALE) \
	    --teacher $(DEMO)/s$$s/teacher/checkpoint.pt --out $(DEMO)/s$$s/$$m \
	    $$([ -f $(DEMO)/s$$s/$$m/checkpoint.pt ] && echo --resume) || exit 1; \
	done; done

evaluate: students
	@rm -f $(RESULTS)
	@for s in $(SEEDS); do \
	  $(FSKD) eval digits --data $(DATA) --ckpt $(DEMO)/s$$s/teacher --scale 1 --results $(RESULTS) || exit 1; \
	  $(FSKD) eval digits --data $(DATA) --ckpt $(DEMO)/s$$s/teacher --scale $(SCALE) --results $(RESULTS) || exit 1; \
	  for m in $(METHODS); do \
	    $(FSKD) eval digits --data $(DATA) --ckpt $(DEMO)/s$$s/$$m --scale $(SCALE) --results $(RESULTS) || exit 1; \
	  done; done

analyze: evaluate
	$(eval S := $(firstword $(SEEDS)))
	$(FSKD) analyze norms --teacher $(DEMO)/s$(S)/teacher --data $(DATA) --scale $(SCALE) --out $(DEMO)/reports \
	  $(foreach m,$(filter-out base,$(METHODS)) base,--ckpt $(DEMO)/s$(S)/$(m))
	$(FSKD) analyze correlation --teacher $(DEMO)/s$(S)/teacher --data $(DATA) --scale $(SCALE) --out $(DEMO)/reports \
	  $(foreach m,$(METHODS),--ckpt $(DEMO)/s$(S)/$(m))
	$(FSKD) analyze table --results $(RESULTS) --out $(DEMO)/reports/table

demo: analyze

test: venv
	$(VENV)/bin/python -m pytest

clean-demo:
	rm -rf $(DEMO)
