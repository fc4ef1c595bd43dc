module clove.dev/examples/go-host

go 1.19

require clove.dev/clove v0.0.0

replace clove.dev/clove => ../../bindings/go
