// Command images builds OCI image tarballs of the project's binaries without
// a container daemon or registry (github.com/google/go-containerregistry):
// each image is an empty base plus one layer holding a static binary at
// /usr/local/bin/<name>, which is also the entrypoint. The tarballs
// (_output/images/<name>.tar) load with `docker load` or
// `kind load image-archive`; their names (<hub>/<name>:<tag>, default
// ambient/<name>:dev) are the ones the charts use.
package main
