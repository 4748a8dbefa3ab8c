package capture

// Regenerate with hack/gen/bpf.sh (needs Debian's clang, llvm and libbpf-dev).
// The outputs capture_bpfel.go and capture_bpfel.o are committed so that the
// module builds without clang.
//
//go:generate go tool bpf2go -tags linux -target bpfel -cc clang -strip llvm-strip -cflags "-O2 -g -mcpu=v3 -Wall -Werror -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu" -type enrolled_pod -type pod_addr -type listener_kind -type stat capture bpf/capture.c
