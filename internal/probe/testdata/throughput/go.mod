module throughput

go 1.21
