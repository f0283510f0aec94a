module chatd/bench/gen

go 1.19
