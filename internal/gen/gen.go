// Package gen holds the code generated from proto/drove/v1. Regenerate it
// with go generate after editing a .proto file; it needs protoc on PATH
// (apt-get install protobuf-compiler: Debian's 3.21 reproduces the committed
// code exactly), the plugins are Go tools pinned in go.mod.
package gen

//go:generate sh -c "cd ../.. && protoc --plugin=protoc-gen-go=$(go tool -n protoc-gen-go) --plugin=protoc-gen-connect-go=$(go tool -n protoc-gen-connect-go) -I proto --go_out=. --go_opt=module=github.com/drove-dev/drove --connect-go_out=. --connect-go_opt=module=github.com/drove-dev/drove proto/drove/v1/node.proto"
