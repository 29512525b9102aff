module q8bert

go 1.19
