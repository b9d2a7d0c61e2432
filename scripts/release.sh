#!/usr/bin/env bash
# Builds the stock pampa binary for each release platform into dist/:
#
#   dist/pampa-<os>-<arch>                     the binary
#   dist/pampa-<version>-<os>-<arch>.tar.gz    the binary, README.md and LICENSE (if any)
#   dist/SHA256SUMS                            sha256sum of all of the above
#
# Every binary is built with CGO_ENABLED=0 (static on Linux; on macOS Go
# links only the system's libSystem, as every macOS program must) and
# -trimpath, with the version and commit stamped by -ldflags -X, so that
# `pampa --version` says what it is built from.
#
# Settings, from the environment:
#   VERSION     default: git describe --tags --always --dirty, or "dev" outside Git
#   COMMIT      default: git rev-parse --short=12 HEAD, or none outside Git
#   PLATFORMS   default: "linux/amd64 linux/arm64 darwin/amd64 darwin/arm64"
#   DIST        default: dist, from the repository's root (the pampa-* files and
#               SHA256SUMS of an earlier run are removed, nothing else)
#   GO          default: go
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

GO=${GO:-go}
DIST=${DIST:-dist}
PLATFORMS=${PLATFORMS:-linux/amd64 linux/arm64 darwin/amd64 darwin/arm64}
if [[ -z ${VERSION:-} ]]; then
	VERSION=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
fi
if [[ -z ${COMMIT+set} ]]; then
	COMMIT=$(git rev-parse --short=12 HEAD 2>/dev/null || true)
fi
case $VERSION in
*[!A-Za-z0-9._+-]*) echo "release: VERSION=$VERSION: want letters, digits and . _ + -" >&2; exit 2 ;;
esac
case $COMMIT in
*[!A-Za-z0-9._+-]*) echo "release: COMMIT=$COMMIT: want letters, digits and . _ + -" >&2; exit 2 ;;
esac

ldflags="-s -w -X main.version=$VERSION"
if [[ -n $COMMIT ]]; then
	ldflags+=" -X main.commit=$COMMIT"
fi

mkdir -p "$DIST"
# Only what an earlier run made: DIST may be a directory with other files.
rm -f "$DIST"/pampa-* "$DIST/SHA256SUMS"
stage=$(mktemp -d "${TMPDIR:-/tmp}/pampa-release.XXXXXX")
trap 'rm -rf "$stage"' EXIT

extras=(README.md)
[[ -f LICENSE ]] && extras+=(LICENSE)

start=$SECONDS
built=()
for platform in $PLATFORMS; do
	os=${platform%/*}
	arch=${platform#*/}
	bin="pampa-$os-$arch"
	echo "release: building $bin ($VERSION)" >&2
	CGO_ENABLED=0 GOOS=$os GOARCH=$arch "$GO" build -trimpath -ldflags "$ldflags" -o "$DIST/$bin" ./cmd/pampa

	# The archive holds the binary as plain `pampa`, in a directory named
	# after the release. Fixed owner, order and dates: the same inputs make
	# the same archive.
	name="pampa-$VERSION-$os-$arch"
	mkdir "$stage/$name"
	cp "$DIST/$bin" "$stage/$name/pampa"
	cp "${extras[@]}" "$stage/$name/"
	tar -C "$stage" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf - "$name" | gzip -9n >"$DIST/$name.tar.gz"
	built+=("$bin" "$name.tar.gz")
done

(cd "$DIST" && sha256sum "${built[@]}" >SHA256SUMS)

echo "release: $VERSION${COMMIT:+ (commit $COMMIT)} in $((SECONDS - start))s, into $DIST/:"
for f in "${built[@]}" SHA256SUMS; do
	printf '  %10d  %s\n' "$(wc -c <"$DIST/$f")" "$f"
done
