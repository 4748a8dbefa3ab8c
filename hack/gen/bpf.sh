#!/usr/bin/env bash
# Regenerates the committed bpf2go output of ztunnel/capture (capture_bpfel.go,
# capture_bpfel.o) from ztunnel/capture/bpf/capture.c.
#
# Needs Debian's clang, llvm (llvm-strip) and libbpf-dev (bpf/bpf_helpers.h):
#   apt-get install -y clang llvm libbpf-dev
# The output depends only on the source, the headers and the compiler version:
# bpf2go strips DWARF (BTF stays), omits the clang ident and maps the source
# directory, and gen.go fixes the flags (-O2 -g -mcpu=v3). CI can check that the
# committed files are current with:
#   hack/gen/bpf.sh && git diff --exit-code -- ztunnel/capture
set -euo pipefail

cd "$(dirname "$0")/../.."

for tool in clang llvm-strip; do
	if ! command -v "$tool" >/dev/null; then
		echo "bpf.sh: $tool not found: apt-get install -y clang llvm libbpf-dev" >&2
		exit 1
	fi
done
if [ ! -f /usr/include/bpf/bpf_helpers.h ]; then
	echo "bpf.sh: bpf/bpf_helpers.h not found: apt-get install -y libbpf-dev" >&2
	exit 1
fi

# Same source and flags as on the CI machine give byte-identical objects; warn
# when the compiler differs from the one the committed objects were built with.
want_clang="Debian clang version 14.0.6"
if ! clang --version | head -n1 | grep -qF "$want_clang"; then
	echo "bpf.sh: warning: $(clang --version | head -n1) is not \"$want_clang\"; the objects may differ from the committed ones" >&2
fi

go generate ./ztunnel/capture/
