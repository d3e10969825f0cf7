# bramble: `make help` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash
CARGO ?= cargo
DATA ?= ./data
BENCHES := bench_dhcp bench_tftp bench_nfs bench_boot

.PHONY: help build run test e2e e2e-shell image-test bench lint fmt check-config clean

help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

build: ## Build the bramble binary and the test helpers (debug)
	$(CARGO) build --workspace --all-targets

run: build ## Run bramble natively with the data volume in ./data (safe defaults: proxy DHCP, answers nobody until clients are registered)
	@mkdir -p $(DATA)
	@echo "bramble: data in $(DATA); health at http://127.0.0.1:8080/health; Ctrl-C stops it"
	@if [ "$$(id -u)" != 0 ]; then echo "note: not root, so ports 67/69 cannot be bound: /health will show dhcp/tftp as failing"; fi
	./target/debug/bramble serve --data $(DATA)

test: build ## Run every test (unit, integration, network-namespace tests need root)
	$(CARGO) test --workspace --no-fail-fast

e2e: build ## Only the end-to-end boots (QEMU + iPXE + kernel over bramble's DHCP/TFTP/NFS; root)
	$(CARGO) test -p bramble-tests --test e2e --test e2e_arm64 -- --nocapture

e2e-shell: build ## Boot a client by hand: QEMU console on a bench LAN (MODE=proxy|standalone; Ctrl-A X quits)
	./target/debug/e2e_shell $(or $(MODE),proxy)

image-test: ## Only the image test: build the Containerfile with buildah, run it as PID 1 (root; cache in /var/cache/bramble-image)
	$(CARGO) test -p bramble-tests --test image -- --nocapture

bench: ## Benchmarks: bramble vs dnsmasq (DHCP, TFTP), printed as ratios
	$(CARGO) build --release --workspace --bins
	@set -e; for b in $(BENCHES); do \
	  if [ -x target/release/$$b ]; then echo "== $$b"; BRAMBLE_BIN=$$PWD/target/release/bramble target/release/$$b; fi; \
	done

lint: ## rustfmt and clippy (warnings are errors)
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

check-config: build ## Validate $(DATA)/bramble.toml
	./target/debug/bramble check-config --data $(DATA)

clean: ## Remove build output (keeps ./data)
	$(CARGO) clean
