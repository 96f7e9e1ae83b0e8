# Quick start: `make run` and `make test`. Both create .venv with the Python found here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck clean dist

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "RelayDesk needs Python 3.11 or newer (set PYTHON=python3.x)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The console, on the embedded defaults: it starts Redis, the sandbox gateway and a worker.
run: $(STAMP)
	$(BIN)/relaydesk gui

# The tests run in one process per core: the end-to-end ones mostly wait on real workers,
# Redis and the gateway (and run twice when RELAYDESK_TEST_POSTGRES_URL is set): one after
# another they would take over 30 minutes on 2 cores. Each test has its own data dir and ports.
test: $(STAMP)
	$(BIN)/ruff check engine desktop tests benchmarks
	$(BIN)/mypy
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -n auto --dist worksteal

lint: $(STAMP)
	$(BIN)/ruff check engine desktop tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache

# The packaged app: dist/relaydesk/ (PyInstaller, build.spec), the .tar.gz and .deb built
# from it, a compile check of the Windows installer script, then the frozen smoke test
# (tests/frozen). Takes minutes, so it is not part of `make test`. docs/packaging.md.
DIST_STAMP := $(VENV)/.dist-installed

$(DIST_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,dist]'
	touch $(DIST_STAMP)

dist: $(DIST_STAMP)
	@command -v objdump >/dev/null || { echo "make dist: PyInstaller needs objdump and strip: apt install binutils"; exit 1; }
	@command -v dpkg-deb >/dev/null || { echo "make dist: the .deb needs dpkg-deb: apt install dpkg"; exit 1; }
	@command -v desktop-file-validate >/dev/null || echo "make dist: desktop-file-validate not found, the menu entry will not be validated (apt install desktop-file-utils)"
	@command -v makensis >/dev/null || echo "make dist: makensis not found, the Windows installer script will not be checked (apt install nsis)"
	rm -rf build/pyinstaller dist/relaydesk
	$(BIN)/pyinstaller --noconfirm --log-level WARN --distpath dist --workpath build/pyinstaller build.spec
	$(BIN)/python packaging/build_installers.py --check-nsis
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -m frozen tests/frozen
