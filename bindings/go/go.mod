module clove.dev/clove

go 1.19
