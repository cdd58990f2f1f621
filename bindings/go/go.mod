module github.com/kecs-cluster/kecs-cluster/bindings/go

go 1.21
