#!/usr/bin/env bash
# Checks that `go install` builds the pampa command with nothing but the Go
# toolchain and the module proxy: an empty module cache and GOPATH in a
# temporary directory, GOFLAGS=-mod=mod, CGO_ENABLED=0, the usual GOPROXY.
# Then it runs the installed `pampa --version`.
#
#   scripts/install-check.sh             go install ./cmd/pampa from this checkout
#   scripts/install-check.sh VERSION     go install github.com/pampa-go/pampa/cmd/pampa@VERSION
#                                        (a published version, or latest)
#
# From the checkout it also checks what `go install ...@version` needs of
# the module and a local build would not notice: no replace or exclude
# directive in go.mod (go install refuses them), and a go.mod and go.sum
# that the build leaves as they are (nothing missing, nothing to tidy).
#
# The build cache (GOCACHE) is kept: it holds only results keyed by their
# inputs, so it cannot stand in for a missing dependency; set
# GOCACHE=$(mktemp -d) to build everything from source as well.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

GO=${GO:-go}
module=github.com/pampa-go/pampa
ref=${1:-}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pampa-install-check.XXXXXX")
# The module cache is read-only: make it writable to remove it.
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT

export GOPATH=$tmp/gopath
export GOMODCACHE=$tmp/gopath/pkg/mod
export GOBIN=$tmp/bin
export GOFLAGS=-mod=mod
export CGO_ENABLED=0
export GOPROXY=${GOPROXY:-https://proxy.golang.org,direct}
if [[ $GOPROXY == off ]]; then
	echo "install-check: GOPROXY=off: the check needs the module proxy" >&2
	exit 2
fi
# Only the toolchain here: no workspace, no vendored copies.
export GOWORK=off

start=$SECONDS
if [[ -n $ref ]]; then
	echo "install-check: go install $module/cmd/pampa@$ref (GOPROXY=$GOPROXY)" >&2
	# No main module there, so -mod has nothing to apply to.
	(cd "$tmp" && GOFLAGS= "$GO" install "$module/cmd/pampa@$ref")
else
	if "$GO" mod edit -json | grep -Eq '"(Replace|Exclude)": \['; then
		echo "install-check: go.mod has replace or exclude directives: go install $module/cmd/pampa@version would refuse the module" >&2
		exit 1
	fi
	cp go.mod "$tmp/go.mod.before"
	cp go.sum "$tmp/go.sum.before"
	echo "install-check: go install ./cmd/pampa with an empty module cache in $GOMODCACHE (GOPROXY=$GOPROXY)" >&2
	"$GO" install ./cmd/pampa
	for f in go.mod go.sum; do
		if ! cmp -s "$f" "$tmp/$f.before"; then
			echo "install-check: the build changed $f (run go mod tidy and commit it):" >&2
			diff -u "$tmp/$f.before" "$f" >&2 || true
			cp "$tmp/$f.before" "$f"
			exit 1
		fi
	done
fi

modules=$(find "$GOMODCACHE/cache/download" -name '*.zip' | wc -l)
echo "install-check: built in $((SECONDS - start))s from $modules modules downloaded into an empty cache" >&2
"$GOBIN/pampa" --version
