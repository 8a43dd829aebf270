# Mutation check: one-line changes to each method (<subproject>/mutations.yaml) must make its tests fail.
# Slow (one test run per change); not part of `make test`. Included by the Makefile.
.PHONY: mutation-check

# MUTATIONS=dsp_torch/mutations.yaml limits the check to one list; ONLY=id to one change.
MUTATIONS ?=

mutation-check: $(STAMP) ## apply each listed one-line method change to a scratch copy, run its tests: killed/survived
	$(PY) scripts/mutation_check.py $(MUTATIONS) $(if $(ONLY),--only $(ONLY))
