module fixture/sigcount

go 1.21
