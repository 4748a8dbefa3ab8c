package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	binDir := flag.String("bin-dir", "_output/bin", "directory of the static binaries built by `make build`")
	outDir := flag.String("out", "_output/images", "where to write <name>.tar")
	hub := flag.String("hub", "ambient", "image repository prefix (the charts' global.hub)")
	tag := flag.String("tag", "dev", "image tag (the charts' global.tag)")
	names := flag.String("images", strings.Join(Default, ","), "comma-separated binaries to package")
	flag.Parse()
	if err := os.MkdirAll(*outDir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
	for _, n := range strings.Split(*names, ",") {
		ref := fmt.Sprintf("%s/%s:%s", *hub, n, *tag)
		out := filepath.Join(*outDir, n+".tar")
		if err := WriteTarball(filepath.Join(*binDir, n), ref, out); err != nil {
			fmt.Fprintln(os.Stderr, "images:", err)
			os.Exit(1)
		}
		fmt.Printf("%s → %s\n", ref, out)
	}
}
