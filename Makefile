# qmigrate: the two commands a newcomer needs are `make run` and `make test` (README).
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

PLAYBOOK := $(BIN)/ansible-playbook

.PHONY: setup run lab provision launch migrate_vms teardown test lint unit molecule integration soak bench bench-service clean

## setup: system packages and the virtual environment (idempotent)
setup:
	scripts/setup

## run: set up, then the main job: build the embedded lab, provision it, launch vm0 and
## its destination, migrate vm0 and verify it (results/latest/run.json)
run: setup
	$(PLAYBOOK) migrate.yml

## lab, provision, launch, migrate_vms (migrate the VMs that run, and verify them), teardown:
## one playbook of playbooks/
lab provision launch migrate_vms teardown: setup
	$(PLAYBOOK) playbooks/$@.yml

## test: the whole test suite (lint, unit, molecule role tests, integration on the lab)
test: setup
	scripts/test

lint: setup
	scripts/test lint

unit: setup
	scripts/test unit

molecule: setup
	scripts/test molecule

integration: setup
	scripts/test integration

## soak: the repeated trials make test runs once: each kind of fault 5 times, 20
## migrations back and forth under one iperf3 stream, the whole compare campaign
## (3 methods x 5 repetitions), 10 profiled migrations whose downtime's anatomy must
## hold each time, and 6 migrations of the seed's guest under redis and memcached load
## with every request answered (builds the lab, removes it after)
soak: setup
	QMIGRATE_FAULT_TRIALS=5 QMIGRATE_PINGPONG=20 QMIGRATE_CAMPAIGN=campaigns/compare.yml \
		QMIGRATE_ANATOMY_TRIALS=10 QMIGRATE_SERVICE_TRIALS=6 \
		$(BIN)/pytest -q -s --durations=10 tests/integration/test_faults.py \
		tests/integration/test_pingpong.py tests/integration/test_campaign.py \
		tests/integration/test_profile.py::test_the_anatomy_holds_trial_after_trial \
		tests/integration/test_service.py::test_a_service_under_load_holds_trial_after_trial

## bench-service: the open-loop service client's limits here (rising rates against the
## seed's idle guest, redis and memcached; builds the lab, removes it after)
bench-service: setup
	$(BIN)/python -m bench.service $(BENCH_ARGS)

## bench: issue 7's benchmark (not part of test): builds the lab, prints the table and writes
## bench/results/<stamp>.json, then tears the lab down; BENCH_ARGS="--reps 1" to pass options
bench: setup
	$(BIN)/python -m bench $(BENCH_ARGS)

## clean: tear the lab down and remove the virtual environment
clean:
	-[ -x $(PLAYBOOK) ] && $(PLAYBOOK) playbooks/teardown.yml
	rm -rf $(VENV)
