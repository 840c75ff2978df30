module insncost

go 1.17
