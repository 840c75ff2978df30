module sigurg

go 1.17
